//! Queues and the role grants of users to them.
//!
//! A queue's stream id is a UUID v5 of its normalised name, so a name is taken once. The stream
//! holds the configuration and every grant: who may work in the queue, in which role, with which
//! skills, from when until when. A grant with an end expires by itself: [`Queue::grants_of`]
//! answers for a given `now`, so nothing has to run for a temporary grant to stop counting.
//!
//! Candidate groups are declared by the queue ([`QueueConfig::groups`]); a task's groups and a
//! grant's skills must be among them, which is how "an unknown candidate group" is caught.
//! Groups may be added later but not removed, since open tasks may name them.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{name_id, name_key, text, value_error, GroupLabel, Priority, ValueError};
use crate::user::Username;
use crate::Aggregate;

/// The longest queue name, in characters.
pub const MAX_NAME_CHARS: usize = 80;
/// The most open tasks one user may hold in one queue, as a configuration limit.
pub const MAX_PER_USER: u32 = 1_000;
/// The longest SLA a priority may have: a year, in minutes.
pub const MAX_SLA_MINUTES: u32 = 525_600;
/// The most unfinished tasks a queue's total capacity may name.
pub const MAX_TOTAL: u32 = 1_000_000;
/// Grant windows must lie within these years: anything else is a typo, and PostgreSQL could
/// not store every year a client can write.
pub const GRANT_YEARS: std::ops::RangeInclusive<i32> = 2000..=2199;
/// The most escalation levels a policy may have.
pub const MAX_ESCALATION_LEVEL: u32 = 10;

/// How a queue's new tasks reach people.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Distribution {
    /// Nobody is assigned: people claim (claim next, or a given task).
    #[default]
    Pull,
    /// Push: the next person with room, in username order after the last one assigned.
    RoundRobin,
    /// Push: the person with the fewest claimed tasks against the per-user capacity.
    LeastLoaded,
    /// Push: the person whose skills cover most of the task's candidate groups.
    SkillBased,
    /// Push: the person whose claimed tasks weigh least, each weighing its priority.
    PriorityWeighted,
}

impl Distribution {
    pub const ALL: [Distribution; 5] = [
        Distribution::Pull,
        Distribution::RoundRobin,
        Distribution::LeastLoaded,
        Distribution::SkillBased,
        Distribution::PriorityWeighted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Distribution::Pull => "pull",
            Distribution::RoundRobin => "round_robin",
            Distribution::LeastLoaded => "least_loaded",
            Distribution::SkillBased => "skill_based",
            Distribution::PriorityWeighted => "priority_weighted",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ValueError> {
        Distribution::ALL
            .into_iter()
            .find(|d| d.as_str() == value)
            .ok_or_else(|| {
                value_error(
                    "distribution",
                    "give pull, round_robin, least_loaded, skill_based or priority_weighted",
                )
            })
    }

    pub fn is_push(self) -> bool {
        self != Distribution::Pull
    }
}

/// How much work a queue takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capacity {
    /// The most tasks one user may hold claimed in this queue at once.
    pub per_user: u32,
    /// The most unfinished (open or claimed) tasks the queue holds in all; `None` for no limit.
    /// A task created beyond it is refused.
    pub total: Option<u32>,
}

/// Due times by priority: a task is due this many minutes after it is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlaPolicy {
    pub due_minutes: BTreeMap<Priority, u32>,
}

impl SlaPolicy {
    /// A day for priority 1, halving up to 90 minutes for priority 5.
    pub fn standard() -> Self {
        SlaPolicy {
            due_minutes: Priority::ALL
                .into_iter()
                .zip([1440, 720, 360, 180, 90])
                .collect(),
        }
    }

    pub fn due_in(&self, priority: Priority) -> Duration {
        let minutes = self.due_minutes.get(&priority).copied().unwrap_or(1440);
        Duration::minutes(i64::from(minutes))
    }

    fn check(&self) -> Result<(), ValueError> {
        for p in Priority::ALL {
            match self.due_minutes.get(&p) {
                None => {
                    return Err(value_error(
                        "sla_minutes",
                        format!("no due time for priority {p}; give one for each of 1 to 5"),
                    ))
                }
                Some(&m) if m == 0 || m > MAX_SLA_MINUTES => {
                    return Err(value_error(
                        "sla_minutes",
                        format!("priority {p}: give 1 to {MAX_SLA_MINUTES} minutes"),
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(())
    }
}

/// What happens to an overdue task: escalation level 1 when its due time passes, one more
/// level every `repeat_every_minutes` after that up to `max_level`, and each level raises the
/// priority by `raise_priority_by` (never past 5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EscalationPolicy {
    pub raise_priority_by: u8,
    pub repeat_every_minutes: u32,
    pub max_level: u32,
}

impl EscalationPolicy {
    pub fn standard() -> Self {
        EscalationPolicy {
            raise_priority_by: 1,
            repeat_every_minutes: 60,
            max_level: 3,
        }
    }

    /// The level a task due at `due_at` has reached at `now` (0 before it is due).
    pub fn level_at(&self, due_at: DateTime<Utc>, now: DateTime<Utc>) -> u32 {
        if now < due_at {
            return 0;
        }
        let overdue = (now - due_at).num_minutes().max(0);
        let steps = overdue / i64::from(self.repeat_every_minutes.max(1));
        u32::try_from(steps.saturating_add(1))
            .unwrap_or(u32::MAX)
            .min(self.max_level)
    }

    fn check(&self) -> Result<(), ValueError> {
        if self.raise_priority_by > 4 {
            return Err(value_error("escalation.raise_priority_by", "give 0 to 4"));
        }
        if self.repeat_every_minutes == 0 || self.repeat_every_minutes > MAX_SLA_MINUTES {
            return Err(value_error(
                "escalation.repeat_every_minutes",
                format!("give 1 to {MAX_SLA_MINUTES}"),
            ));
        }
        if self.max_level == 0 || self.max_level > MAX_ESCALATION_LEVEL {
            return Err(value_error(
                "escalation.max_level",
                format!("give 1 to {MAX_ESCALATION_LEVEL}"),
            ));
        }
        Ok(())
    }
}

/// Everything about a queue but its name and grants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueConfig {
    pub department_id: Uuid,
    pub capacity: Capacity,
    pub sla: SlaPolicy,
    pub escalation: EscalationPolicy,
    pub distribution: Distribution,
    /// The candidate groups tasks in this queue may name (sorted, no repeats).
    pub groups: Vec<GroupLabel>,
}

impl QueueConfig {
    fn check(&self) -> Result<(), ValueError> {
        if self.capacity.per_user == 0 || self.capacity.per_user > MAX_PER_USER {
            return Err(value_error(
                "capacity.per_user",
                format!("give 1 to {MAX_PER_USER}"),
            ));
        }
        if self.capacity.total.is_some_and(|t| t == 0 || t > MAX_TOTAL) {
            return Err(value_error(
                "capacity.total",
                format!("give 1 to {MAX_TOTAL}, or leave it out for no limit"),
            ));
        }
        self.sla.check()?;
        self.escalation.check()
    }

    /// The first of `groups` this queue does not declare.
    pub fn unknown_group<'a>(&self, groups: &'a [GroupLabel]) -> Option<&'a GroupLabel> {
        groups.iter().find(|g| !self.groups.contains(g))
    }
}

/// What a grant lets a user do in a queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueRole {
    /// Claims and completes tasks.
    Member,
    /// A member who may also delegate and reassign the queue's tasks.
    Lead,
}

impl QueueRole {
    pub fn as_str(self) -> &'static str {
        match self {
            QueueRole::Member => "member",
            QueueRole::Lead => "lead",
        }
    }

    pub fn parse(value: &str) -> Result<Self, ValueError> {
        match value {
            "member" => Ok(QueueRole::Member),
            "lead" => Ok(QueueRole::Lead),
            _ => Err(value_error("role", "give member or lead")),
        }
    }
}

/// A user's role in a queue for a window of time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub grant_id: Uuid,
    pub username: Username,
    pub role: QueueRole,
    /// The candidate groups the user works (a subset of the queue's groups).
    pub skills: Vec<GroupLabel>,
    pub valid_from: DateTime<Utc>,
    /// `None`: until revoked.
    pub valid_until: Option<DateTime<Utc>>,
}

impl Grant {
    /// In force at `now`: started, and not yet ended.
    pub fn valid_at(&self, now: DateTime<Utc>) -> bool {
        self.valid_from <= now && self.valid_until.is_none_or(|end| now < end)
    }
}

/// What a user may do in a queue at one moment: the union of their grants in force then.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Standing {
    pub member: bool,
    pub lead: bool,
    pub skills: Vec<GroupLabel>,
}

impl Standing {
    /// The union of the grants in force (each a role and its skills): a member with any, a
    /// lead with a lead grant, every skill once. The one rule for both this aggregate and the
    /// command side, which reads grants from its look-up table.
    pub fn from_grants(grants: impl IntoIterator<Item = (QueueRole, Vec<GroupLabel>)>) -> Self {
        let mut standing = Standing::default();
        for (role, skills) in grants {
            standing.member = true;
            standing.lead |= role == QueueRole::Lead;
            standing.skills.extend(skills);
        }
        standing.skills.sort();
        standing.skills.dedup();
        standing
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum QueueCommand {
    Create {
        name: String,
        config: QueueConfig,
        /// Whether `config.department_id` names a department (looked up outside).
        department_exists: bool,
    },
    Configure {
        config: QueueConfig,
        department_exists: bool,
    },
    Grant {
        grant_id: Uuid,
        username: Username,
        /// Whether the user has an account (looked up outside).
        user_exists: bool,
        role: QueueRole,
        skills: Vec<GroupLabel>,
        /// `None`: from now.
        valid_from: Option<DateTime<Utc>>,
        valid_until: Option<DateTime<Utc>>,
    },
    Revoke {
        grant_id: Uuid,
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum QueueEvent {
    QueueCreated {
        name: String,
        config: QueueConfig,
        at: DateTime<Utc>,
    },
    QueueConfigured {
        config: QueueConfig,
        at: DateTime<Utc>,
    },
    QueueAccessGranted {
        grant: Grant,
        at: DateTime<Utc>,
    },
    QueueAccessRevoked {
        grant_id: Uuid,
        username: Username,
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("a queue named {name:?} already exists")]
    NameTaken { name: String },
    #[error("no such queue")]
    NotFound,
    #[error("department {department_id} does not exist")]
    UnknownDepartment { department_id: Uuid },
    #[error("user {username} does not exist")]
    UnknownUser { username: String },
    #[error("candidate group {group:?} is not one of this queue's groups")]
    UnknownGroup { group: String },
    #[error("group {group:?} cannot be removed: tasks may name it")]
    GroupRemoved { group: String },
    #[error("the grant's window ends ({valid_until}) before it starts ({valid_from})")]
    WindowEndsBeforeStart {
        valid_from: DateTime<Utc>,
        valid_until: DateTime<Utc>,
    },
    #[error("the grant's window ended already ({valid_until})")]
    WindowInPast { valid_until: DateTime<Utc> },
    #[error("grant {grant_id} already exists")]
    GrantExists { grant_id: Uuid },
    #[error("no grant {grant_id} in this queue")]
    UnknownGrant { grant_id: Uuid },
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl crate::refusal::Refusal for QueueError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        use QueueError as Q;
        match self {
            Q::NameTaken { .. } | Q::GroupRemoved { .. } | Q::GrantExists { .. } => K::Conflict,
            Q::NotFound | Q::UnknownGrant { .. } => K::NotFound,
            Q::UnknownDepartment { .. }
            | Q::UnknownUser { .. }
            | Q::UnknownGroup { .. }
            | Q::WindowEndsBeforeStart { .. }
            | Q::WindowInPast { .. }
            | Q::Invalid(_) => K::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        use QueueError as Q;
        match self {
            Q::NameTaken { .. } => "queue_name_taken",
            Q::NotFound => "queue_not_found",
            Q::UnknownDepartment { .. } => "unknown_department",
            Q::UnknownUser { .. } => "unknown_user",
            Q::UnknownGroup { .. } => "unknown_group",
            Q::GroupRemoved { .. } => "group_removed",
            Q::WindowEndsBeforeStart { .. } | Q::WindowInPast { .. } => "invalid_grant_window",
            Q::GrantExists { .. } => "grant_exists",
            Q::UnknownGrant { .. } => "grant_not_found",
            Q::Invalid(_) => "invalid_field",
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            QueueError::Invalid(v) => v.details(),
            _ => serde_json::Map::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Queue {
    pub name: Option<String>,
    pub config: Option<QueueConfig>,
    /// Grants not revoked, by id (expired ones stay: they are history, and harmless).
    pub grants: BTreeMap<Uuid, Grant>,
}

impl Queue {
    pub fn stream_id(name: &str) -> Uuid {
        name_id("queue", &name_key(name))
    }

    pub fn exists(&self) -> bool {
        self.name.is_some()
    }

    /// The grants in force for `username` at `now`.
    pub fn grants_of<'a>(
        &'a self,
        username: &'a str,
        now: DateTime<Utc>,
    ) -> impl Iterator<Item = &'a Grant> + 'a {
        self.grants
            .values()
            .filter(move |g| g.username.as_str() == username && g.valid_at(now))
    }

    /// What `username` may do here at `now`.
    pub fn standing(&self, username: &str, now: DateTime<Utc>) -> Standing {
        Standing::from_grants(
            self.grants_of(username, now)
                .map(|g| (g.role, g.skills.clone())),
        )
    }

    /// Everyone with a grant in force at `now`, with their standing, by username.
    pub fn members_at(&self, now: DateTime<Utc>) -> BTreeMap<String, Standing> {
        let mut members = BTreeMap::new();
        for g in self.grants.values().filter(|g| g.valid_at(now)) {
            members
                .entry(g.username.as_str().to_owned())
                .or_insert_with(|| self.standing(g.username.as_str(), now));
        }
        members
    }
}

impl Aggregate for Queue {
    const STREAM_TYPE: &'static str = "queue";
    type Command = QueueCommand;
    type Event = QueueEvent;
    type Error = QueueError;

    fn decide(
        &self,
        command: &QueueCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<QueueEvent>, QueueError> {
        match command {
            QueueCommand::Create {
                name,
                config,
                department_exists,
            } => {
                let name = text("name", name, MAX_NAME_CHARS)?;
                if let Some(existing) = &self.name {
                    return Err(QueueError::NameTaken {
                        name: existing.clone(),
                    });
                }
                check_config(config, *department_exists)?;
                Ok(vec![QueueEvent::QueueCreated {
                    name,
                    config: config.clone(),
                    at: now,
                }])
            }
            QueueCommand::Configure {
                config,
                department_exists,
            } => {
                let current = self.config.as_ref().ok_or(QueueError::NotFound)?;
                check_config(config, *department_exists)?;
                if let Some(group) = current.groups.iter().find(|g| !config.groups.contains(g)) {
                    return Err(QueueError::GroupRemoved {
                        group: group.to_string(),
                    });
                }
                if config == current {
                    return Ok(Vec::new());
                }
                Ok(vec![QueueEvent::QueueConfigured {
                    config: config.clone(),
                    at: now,
                }])
            }
            QueueCommand::Grant {
                grant_id,
                username,
                user_exists,
                role,
                skills,
                valid_from,
                valid_until,
            } => {
                let config = self.config.as_ref().ok_or(QueueError::NotFound)?;
                if self.grants.contains_key(grant_id) {
                    return Err(QueueError::GrantExists {
                        grant_id: *grant_id,
                    });
                }
                if !user_exists {
                    return Err(QueueError::UnknownUser {
                        username: username.as_str().to_owned(),
                    });
                }
                if let Some(group) = config.unknown_group(skills) {
                    return Err(QueueError::UnknownGroup {
                        group: group.to_string(),
                    });
                }
                for (field, at) in [("valid_from", *valid_from), ("valid_until", *valid_until)] {
                    if at.is_some_and(|at| !GRANT_YEARS.contains(&chrono::Datelike::year(&at))) {
                        return Err(value_error(
                            field,
                            format!(
                                "give a time in the years {} to {}",
                                GRANT_YEARS.start(),
                                GRANT_YEARS.end()
                            ),
                        )
                        .into());
                    }
                }
                let valid_from = valid_from.unwrap_or(now);
                if let Some(end) = *valid_until {
                    if end <= valid_from {
                        return Err(QueueError::WindowEndsBeforeStart {
                            valid_from,
                            valid_until: end,
                        });
                    }
                    if end <= now {
                        return Err(QueueError::WindowInPast { valid_until: end });
                    }
                }
                let mut skills = skills.clone();
                skills.sort();
                skills.dedup();
                Ok(vec![QueueEvent::QueueAccessGranted {
                    grant: Grant {
                        grant_id: *grant_id,
                        username: username.clone(),
                        role: *role,
                        skills,
                        valid_from,
                        valid_until: *valid_until,
                    },
                    at: now,
                }])
            }
            QueueCommand::Revoke { grant_id, reason } => {
                if !self.exists() {
                    return Err(QueueError::NotFound);
                }
                let grant = self.grants.get(grant_id).ok_or(QueueError::UnknownGrant {
                    grant_id: *grant_id,
                })?;
                let reason = text("reason", reason, super::values::MAX_REASON_CHARS)?;
                Ok(vec![QueueEvent::QueueAccessRevoked {
                    grant_id: *grant_id,
                    username: grant.username.clone(),
                    reason,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut self, event: &QueueEvent) -> Self {
        match event {
            QueueEvent::QueueCreated { name, config, .. } => {
                self.name = Some(name.clone());
                self.config = Some(config.clone());
            }
            QueueEvent::QueueConfigured { config, .. } => self.config = Some(config.clone()),
            QueueEvent::QueueAccessGranted { grant, .. } => {
                self.grants.insert(grant.grant_id, grant.clone());
            }
            QueueEvent::QueueAccessRevoked { grant_id, .. } => {
                self.grants.remove(grant_id);
            }
        }
        self
    }
}

fn check_config(config: &QueueConfig, department_exists: bool) -> Result<(), QueueError> {
    config.check()?;
    if !department_exists {
        return Err(QueueError::UnknownDepartment {
            department_id: config.department_id,
        });
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn t(minutes: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default() + Duration::minutes(minutes)
    }

    pub(crate) fn config(distribution: Distribution) -> QueueConfig {
        QueueConfig {
            department_id: Uuid::from_u128(7),
            capacity: Capacity {
                per_user: 2,
                total: None,
            },
            sla: SlaPolicy::standard(),
            escalation: EscalationPolicy::standard(),
            distribution,
            groups: ["billing", "dea", "license"]
                .iter()
                .map(|g| GroupLabel::parse(g).expect("valid in this test"))
                .collect(),
        }
    }

    pub(crate) fn queue_with(grants: &[(&str, QueueRole, &[&str], Option<i64>)]) -> Queue {
        let mut events = vec![QueueEvent::QueueCreated {
            name: "Licensing".into(),
            config: config(Distribution::Pull),
            at: t(0),
        }];
        for (i, (user, role, skills, until)) in grants.iter().enumerate() {
            events.push(QueueEvent::QueueAccessGranted {
                grant: Grant {
                    grant_id: Uuid::from_u128(100 + i as u128),
                    username: Username::parse(user).expect("valid in this test"),
                    role: *role,
                    skills: skills
                        .iter()
                        .map(|s| GroupLabel::parse(s).expect("valid in this test"))
                        .collect(),
                    valid_from: t(0),
                    valid_until: until.map(t),
                },
                at: t(0),
            });
        }
        crate::fold(&events)
    }

    fn grant(valid_from: Option<i64>, valid_until: Option<i64>, skills: &[&str]) -> QueueCommand {
        QueueCommand::Grant {
            grant_id: Uuid::from_u128(1),
            username: Username::parse("alice").expect("valid in this test"),
            user_exists: true,
            role: QueueRole::Member,
            skills: skills
                .iter()
                .map(|s| GroupLabel::parse(s).expect("valid in this test"))
                .collect(),
            valid_from: valid_from.map(t),
            valid_until: valid_until.map(t),
        }
    }

    #[test]
    fn a_grant_whose_window_ends_before_it_starts_is_refused() {
        let queue = queue_with(&[]);
        assert!(matches!(
            queue.decide(&grant(Some(60), Some(30), &[]), t(0)),
            Err(QueueError::WindowEndsBeforeStart { .. })
        ));
    }

    #[test]
    fn a_grant_naming_a_group_the_queue_does_not_have_is_refused() {
        let queue = queue_with(&[]);
        assert_eq!(
            queue.decide(&grant(None, None, &["surgery"]), t(0)),
            Err(QueueError::UnknownGroup {
                group: "surgery".into()
            })
        );
    }

    #[test]
    fn a_temporary_grant_expires_by_itself() {
        let queue = queue_with(&[("alice", QueueRole::Lead, &["dea"], Some(30))]);
        assert!(queue.standing("alice", t(29)).lead);
        assert_eq!(queue.standing("alice", t(30)), Standing::default());
        assert!(queue.members_at(t(31)).is_empty());
    }

    #[test]
    fn standing_unites_the_grants_in_force() {
        let queue = queue_with(&[
            ("alice", QueueRole::Member, &["dea"], None),
            ("alice", QueueRole::Lead, &["billing"], Some(10)),
        ]);
        let now = queue.standing("alice", t(5));
        assert!(now.member && now.lead);
        assert_eq!(now.skills.len(), 2);
        let later = queue.standing("alice", t(15));
        assert!(later.member && !later.lead);
    }

    #[test]
    fn escalation_levels_step_by_the_policy_and_stop_at_the_maximum() {
        let p = EscalationPolicy::standard();
        assert_eq!(p.level_at(t(100), t(99)), 0);
        assert_eq!(p.level_at(t(100), t(100)), 1);
        assert_eq!(p.level_at(t(100), t(159)), 1);
        assert_eq!(p.level_at(t(100), t(160)), 2);
        assert_eq!(p.level_at(t(100), t(10_000)), 3);
    }

    #[test]
    fn a_queue_configuration_must_give_every_priority_a_due_time() {
        let mut c = config(Distribution::Pull);
        c.sla.due_minutes.remove(&Priority::HIGHEST);
        let e = Queue::default()
            .decide(
                &QueueCommand::Create {
                    name: "Q".into(),
                    config: c,
                    department_exists: true,
                },
                t(0),
            )
            .expect_err("refused in this test");
        assert!(e.to_string().contains("priority 5"), "{e}");
    }
}
