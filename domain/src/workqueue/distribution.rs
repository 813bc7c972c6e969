//! Push distribution: which member of a queue a new task goes to, and why.
//!
//! [`choose`] is pure: the command layer gathers the candidates (members with a grant in force,
//! their skills and their current load, read under the queue's lock) and the last person the
//! queue assigned to; the decision and its [`AssignmentReason`] go into the task's
//! `TaskAssigned` event, so the record says why, not just who.
//!
//! Every strategy first keeps the candidates who may take the task at all: room under the
//! queue's per-user capacity, and (when the task names candidate groups) at least one of those
//! groups among their skills. Then:
//! - **round robin**: the first such candidate in username order after the last one assigned
//!   (wrapping round);
//! - **least loaded**: the fewest claimed tasks; ties by username;
//! - **skill based**: the most of the task's groups covered; ties by fewest claimed, then
//!   username;
//! - **priority weighted**: the smallest sum of the priorities of the tasks held (an urgent
//!   task weighs five times a routine one); ties by fewest claimed, then username.

use serde::{Deserialize, Serialize};

use super::queue::Distribution;
use super::values::GroupLabel;

/// A member who might get the task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub username: String,
    pub skills: Vec<GroupLabel>,
    /// Tasks of this queue the member holds claimed now.
    pub claimed: u32,
    /// The sum of those tasks' priorities.
    pub weighted_load: u32,
}

/// Why a task went to whom it went to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum AssignmentReason {
    RoundRobin {
        /// Who the queue assigned to before; the choice is the next after them.
        after: Option<String>,
    },
    LeastLoaded {
        claimed: u32,
        capacity: u32,
    },
    SkillBased {
        /// The task's groups the assignee covers.
        matched: Vec<GroupLabel>,
        claimed: u32,
    },
    PriorityWeighted {
        weighted_load: u32,
        claimed: u32,
    },
}

impl AssignmentReason {
    /// One sentence for people.
    pub fn explain(&self) -> String {
        match self {
            AssignmentReason::RoundRobin { after: Some(a) } => {
                format!("round robin: next member with room after {a}")
            }
            AssignmentReason::RoundRobin { after: None } => {
                "round robin: first member with room".to_owned()
            }
            AssignmentReason::LeastLoaded { claimed, capacity } => {
                format!("least loaded: {claimed} of {capacity} tasks claimed")
            }
            AssignmentReason::SkillBased { matched, claimed } => format!(
                "skill based: covers {} ({} claimed)",
                if matched.is_empty() {
                    "no particular group".to_owned()
                } else {
                    matched
                        .iter()
                        .map(GroupLabel::as_str)
                        .collect::<Vec<_>>()
                        .join(", ")
                },
                claimed
            ),
            AssignmentReason::PriorityWeighted {
                weighted_load,
                claimed,
            } => format!(
                "priority weighted: lightest load ({weighted_load} priority points over {claimed} tasks)"
            ),
        }
    }
}

/// The chosen member and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Choice {
    pub username: String,
    pub reason: AssignmentReason,
}

/// Why nobody was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoChoice {
    /// The queue is pull-only.
    NotPush,
    /// Nobody holds a grant in force.
    NoMembers,
    /// Members exist, but none has room and the skills.
    NobodyEligible,
}

/// Chooses among `candidates` for a task with candidate `groups`; see the module
/// documentation for each strategy.
pub fn choose(
    distribution: Distribution,
    per_user_capacity: u32,
    groups: &[GroupLabel],
    candidates: &[Candidate],
    last_assigned: Option<&str>,
) -> Result<Choice, NoChoice> {
    if !distribution.is_push() {
        return Err(NoChoice::NotPush);
    }
    if candidates.is_empty() {
        return Err(NoChoice::NoMembers);
    }
    let matched = |c: &Candidate| -> Vec<GroupLabel> {
        groups
            .iter()
            .filter(|g| c.skills.contains(g))
            .cloned()
            .collect()
    };
    let mut eligible: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.claimed < per_user_capacity)
        .filter(|c| groups.is_empty() || !matched(c).is_empty())
        .collect();
    eligible.sort_by(|a, b| a.username.cmp(&b.username));
    let first = *eligible.first().ok_or(NoChoice::NobodyEligible)?;
    let pick = |c: &Candidate, reason| Choice {
        username: c.username.clone(),
        reason,
    };
    Ok(match distribution {
        Distribution::Pull => return Err(NoChoice::NotPush),
        Distribution::RoundRobin => {
            let next = last_assigned
                .and_then(|last| eligible.iter().find(|c| c.username.as_str() > last))
                .copied()
                .unwrap_or(first);
            pick(
                next,
                AssignmentReason::RoundRobin {
                    after: last_assigned.map(str::to_owned),
                },
            )
        }
        Distribution::LeastLoaded => {
            let c = eligible
                .iter()
                .min_by_key(|c| (c.claimed, c.username.as_str()))
                .copied()
                .unwrap_or(first);
            pick(
                c,
                AssignmentReason::LeastLoaded {
                    claimed: c.claimed,
                    capacity: per_user_capacity,
                },
            )
        }
        Distribution::SkillBased => {
            let c = eligible
                .iter()
                .min_by_key(|c| {
                    (
                        std::cmp::Reverse(matched(c).len()),
                        c.claimed,
                        c.username.as_str(),
                    )
                })
                .copied()
                .unwrap_or(first);
            pick(
                c,
                AssignmentReason::SkillBased {
                    matched: matched(c),
                    claimed: c.claimed,
                },
            )
        }
        Distribution::PriorityWeighted => {
            let c = eligible
                .iter()
                .min_by_key(|c| (c.weighted_load, c.claimed, c.username.as_str()))
                .copied()
                .unwrap_or(first);
            pick(
                c,
                AssignmentReason::PriorityWeighted {
                    weighted_load: c.weighted_load,
                    claimed: c.claimed,
                },
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(label: &str) -> GroupLabel {
        GroupLabel::parse(label).expect("valid in this test")
    }

    fn c(name: &str, skills: &[&str], claimed: u32, weighted_load: u32) -> Candidate {
        Candidate {
            username: name.into(),
            skills: skills.iter().map(|s| g(s)).collect(),
            claimed,
            weighted_load,
        }
    }

    fn team() -> Vec<Candidate> {
        vec![
            c("carol", &["dea"], 1, 5),
            c("alice", &["license"], 2, 2),
            c("bob", &["dea", "license"], 0, 0),
            c("dave", &[], 3, 3),
        ]
    }

    fn run(d: Distribution, groups: &[&str], last: Option<&str>) -> Result<Choice, NoChoice> {
        let groups: Vec<GroupLabel> = groups.iter().map(|s| g(s)).collect();
        choose(d, 3, &groups, &team(), last)
    }

    #[test]
    fn round_robin_takes_the_next_member_with_room_after_the_last_one() {
        assert_eq!(
            run(Distribution::RoundRobin, &[], None)
                .expect("valid in this test")
                .username,
            "alice"
        );
        assert_eq!(
            run(Distribution::RoundRobin, &[], Some("alice"))
                .expect("valid in this test")
                .username,
            "bob"
        );
        // dave is full (3 of 3), so after carol it wraps round to alice.
        assert_eq!(
            run(Distribution::RoundRobin, &[], Some("carol"))
                .expect("valid in this test")
                .username,
            "alice"
        );
    }

    #[test]
    fn least_loaded_takes_the_member_with_fewest_claimed_tasks() {
        let choice = run(Distribution::LeastLoaded, &[], None).expect("valid in this test");
        assert_eq!(choice.username, "bob");
        assert_eq!(
            choice.reason,
            AssignmentReason::LeastLoaded {
                claimed: 0,
                capacity: 3
            }
        );
    }

    #[test]
    fn skill_based_takes_the_member_covering_most_of_the_tasks_groups() {
        let choice =
            run(Distribution::SkillBased, &["dea", "license"], None).expect("valid in this test");
        assert_eq!(choice.username, "bob");
        // With only "dea" asked, carol and bob both cover it; bob holds fewer tasks.
        assert_eq!(
            run(Distribution::SkillBased, &["dea"], None)
                .expect("valid in this test")
                .username,
            "bob"
        );
    }

    #[test]
    fn priority_weighted_takes_the_lightest_member_by_priority_points() {
        let mut team = team();
        team.retain(|c| c.username != "bob");
        let choice = choose(Distribution::PriorityWeighted, 3, &[], &team, None)
            .expect("valid in this test");
        // alice holds 2 tasks worth 2 points; carol 1 task worth 5.
        assert_eq!(choice.username, "alice");
    }

    #[test]
    fn members_without_the_tasks_groups_are_never_chosen() {
        assert_eq!(
            run(Distribution::LeastLoaded, &["billing"], None),
            Err(NoChoice::NobodyEligible)
        );
    }

    #[test]
    fn a_pull_queue_assigns_nobody() {
        assert_eq!(run(Distribution::Pull, &[], None), Err(NoChoice::NotPush));
    }
}
