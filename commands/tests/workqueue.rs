//! Work queues under concurrency: claim-next with many claimers, the SLA check from two servers,
//! and push distribution on fixed scenarios. Every property is checked on the event log itself.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use commands::workqueue::{NewTask, NothingToClaim, Reassignment, WorkQueueRefusal, WorkQueues};
use commands::CommandError;
use commands::ManualClock;
use domain::user::Username;
use domain::workqueue::distribution::AssignmentReason;
use domain::workqueue::queue::{
    Capacity, Distribution, EscalationPolicy, QueueConfig, QueueRole, SlaPolicy,
};
use domain::workqueue::task::{Task, TaskEvent};
use domain::workqueue::{GroupLabel, Priority};
use domain::Aggregate;
use eventstore::{Cursor, EventStore, Metadata, RecordedEvent};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

fn t0() -> DateTime<Utc> {
    DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
}

fn minutes(n: i64) -> chrono::Duration {
    chrono::Duration::minutes(n)
}

fn meta(actor: &str) -> Metadata {
    Metadata::by(format!("user:{actor}"))
}

fn groups(labels: &[&str]) -> anyhow::Result<Vec<GroupLabel>> {
    labels
        .iter()
        .map(|l| GroupLabel::parse(l).map_err(anyhow::Error::from))
        .collect()
}

/// A pool of the test's own, big enough that 32 claimers never queue for a connection.
async fn own_pool(connect_options: PgConnectOptions, size: u32) -> anyhow::Result<PgPool> {
    Ok(PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(120))
        .connect_with(connect_options)
        .await?)
}

async fn department(work: &WorkQueues) -> anyhow::Result<Uuid> {
    Ok(work
        .create_department("OPS", "Operations", None, &meta("admin"))
        .await?
        .stream_id)
}

async fn queue(
    work: &WorkQueues,
    department_id: Uuid,
    name: &str,
    distribution: Distribution,
    per_user: u32,
    labels: &[&str],
) -> anyhow::Result<Uuid> {
    let config = QueueConfig {
        department_id,
        capacity: Capacity {
            per_user,
            total: None,
        },
        sla: SlaPolicy::standard(),
        escalation: EscalationPolicy::standard(),
        distribution,
        groups: groups(labels)?,
    };
    Ok(work
        .create_queue(name, config, &meta("admin"))
        .await?
        .stream_id)
}

async fn grant(
    work: &WorkQueues,
    queue_id: Uuid,
    user: &str,
    skills: &[&str],
    valid_until: Option<DateTime<Utc>>,
) -> anyhow::Result<()> {
    work.grant(
        queue_id,
        Uuid::new_v4(),
        Username::parse(user)?,
        true,
        QueueRole::Member,
        groups(skills)?,
        None,
        valid_until,
        &meta("admin"),
    )
    .await?;
    Ok(())
}

async fn task(
    work: &WorkQueues,
    queue_id: Uuid,
    priority: i64,
    labels: &[&str],
) -> anyhow::Result<commands::workqueue::TaskWritten> {
    Ok(work
        .create_task(
            NewTask {
                task_id: Uuid::new_v4(),
                queue_id,
                title: "Verify licence".into(),
                priority: Priority::new(priority)?,
                groups: groups(labels)?,
                case_id: None,
                payload: serde_json::json!({}),
            },
            &meta("intake"),
        )
        .await?)
}

/// Every event of the log up to its head now, in read order. Reads stop below the oldest
/// transaction still running anywhere in the cluster (see `eventstore::cursor`), so this waits
/// for that horizon to pass the head rather than stopping short.
async fn whole_log(store: &EventStore) -> anyhow::Result<Vec<RecordedEvent>> {
    let head = store.head().await?;
    let mut events = Vec::new();
    let mut cursor = Cursor::START;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while cursor < head {
        let page = store.read_all(cursor, 1_000).await?;
        match page.last() {
            Some(last) => cursor = last.cursor,
            None => {
                anyhow::ensure!(
                    std::time::Instant::now() < deadline,
                    "the log stopped at {cursor}, head {head}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        events.extend(page);
    }
    Ok(events)
}

fn task_events(log: &[RecordedEvent]) -> anyhow::Result<Vec<(Uuid, TaskEvent)>> {
    log.iter()
        .filter(|e| e.stream_type == Task::STREAM_TYPE)
        .map(|e| Ok((e.stream_id, eventstore::codec::decode::<Task>(e)?)))
        .collect()
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn thirty_two_claimers_claim_each_of_a_thousand_tasks_exactly_once_within_their_grants(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, 40).await?;
    let store = EventStore::new(pool);
    let clock = ManualClock::at(t0());
    let work = Arc::new(WorkQueues::new(store.clone(), Arc::new(clock.clone())));
    let dept = department(&work).await?;
    const CAPACITY: u32 = 3;
    let licensing = queue(
        &work,
        dept,
        "Licensing",
        Distribution::Pull,
        CAPACITY,
        &["dea", "license"],
    )
    .await?;
    let intake = queue(&work, dept, "Intake", Distribution::Pull, CAPACITY, &[]).await?;

    // 31 permanent claimers: even ones work DEA tasks in Licensing, odd ones licence tasks
    // there and everything in Intake. The 32nd holds a temporary grant on Intake that ends
    // ten (clock) minutes in, while the claimers are at work.
    let mut skills: BTreeMap<(String, Uuid), Vec<&str>> = BTreeMap::new();
    for i in 0..31 {
        let user = format!("worker{i:02}");
        if i % 2 == 0 {
            grant(&work, licensing, &user, &["dea"], None).await?;
            skills.insert((user, licensing), vec!["dea"]);
        } else {
            grant(&work, licensing, &user, &["license"], None).await?;
            grant(&work, intake, &user, &[], None).await?;
            skills.insert((user.clone(), licensing), vec!["license"]);
            skills.insert((user, intake), vec![]);
        }
    }
    let expires = t0() + minutes(10);
    grant(&work, intake, "temp01", &[], Some(expires)).await?;
    skills.insert(("temp01".into(), intake), vec![]);

    for i in 0..1_000_i64 {
        let (q, labels): (Uuid, &[&str]) = match i % 10 {
            0..=3 => (licensing, &["dea"]),
            4..=6 => (licensing, &["license"]),
            _ => (intake, &[]),
        };
        task(&work, q, 1 + i % 5, labels).await?;
    }

    // The clock runs while they work: a minute for every ten claims, so the temporary grant
    // ends about a tenth of the way in. It does not pass the end before temp01 has claimed
    // once, so that the run shows both sides of the expiry.
    let total_claims = Arc::new(AtomicU32::new(0));
    let temp_has_claimed = Arc::new(AtomicBool::new(false));
    let ticking = {
        let clock = clock.clone();
        let (total_claims, temp_has_claimed) = (total_claims.clone(), temp_has_claimed.clone());
        tokio::spawn(async move {
            let mut ticks = 0;
            loop {
                tokio::time::sleep(Duration::from_millis(2)).await;
                let due = total_claims.load(Ordering::SeqCst) / 10;
                while ticks < due && (ticks < 9 || temp_has_claimed.load(Ordering::SeqCst)) {
                    clock.advance(minutes(1));
                    ticks += 1;
                }
            }
        })
    };
    let claimers: Vec<String> = (0..31)
        .map(|i| format!("worker{i:02}"))
        .chain(["temp01".to_owned()])
        .collect();
    let mut handles = Vec::new();
    for user in claimers.clone() {
        let work = work.clone();
        let (total_claims, temp_has_claimed) = (total_claims.clone(), temp_has_claimed.clone());
        handles.push(tokio::spawn(async move {
            let mut claimed = 0_u32;
            let mut refused_for_grant = false;
            loop {
                let key = format!("{user}-{claimed}");
                match work.claim_next(&user, None, Some(&key), &meta(&user)).await {
                    Ok(done) => {
                        if claimed == 0 {
                            // A retried request (same key) gets the same task, and writes nothing.
                            let again = work
                                .claim_next(&user, None, Some(&key), &meta(&user))
                                .await?;
                            anyhow::ensure!(again.task_id == done.task_id && again.replayed);
                        }
                        claimed += 1;
                        total_claims.fetch_add(1, Ordering::SeqCst);
                        if user == "temp01" {
                            temp_has_claimed.store(true, Ordering::SeqCst);
                        }
                        work.complete(
                            done.task_id,
                            &user,
                            "done",
                            None,
                            Some(done.version),
                            &meta(&user),
                        )
                        .await?;
                    }
                    Err(CommandError::Rejected(WorkQueueRefusal::NothingToClaim(
                        NothingToClaim::NoOpenTask,
                    ))) => break,
                    Err(CommandError::Rejected(WorkQueueRefusal::NothingToClaim(
                        NothingToClaim::NoGrants,
                    ))) => {
                        refused_for_grant = true;
                        break;
                    }
                    Err(other) => return Err(anyhow::Error::from(other)),
                }
            }
            Ok::<_, anyhow::Error>((user, claimed, refused_for_grant))
        }));
    }
    // Someone with no grant at all is refused every time, and writes nothing.
    let outsider = work
        .claim_next("outsider", None, None, &meta("outsider"))
        .await;
    assert!(matches!(
        outsider,
        Err(CommandError::Rejected(WorkQueueRefusal::NothingToClaim(
            NothingToClaim::NoGrants
        )))
    ));
    let mut per_user = BTreeMap::new();
    let mut temp_refused = false;
    for handle in handles {
        let (user, claimed, refused) = handle.await??;
        if user == "temp01" {
            temp_refused = refused;
        }
        per_user.insert(user, claimed);
    }
    ticking.abort();
    assert!(
        clock_now(&clock) > expires,
        "the temporary grant expired during the run"
    );

    // The log: every task claimed exactly once and completed once; nobody ever held more than
    // the capacity; every claim was within a grant in force, with the task's groups covered.
    let log = whole_log(&store).await?;
    let events = task_events(&log)?;
    let mut created_tasks: HashMap<Uuid, (Uuid, Vec<GroupLabel>)> = HashMap::new();
    let mut claims: HashMap<Uuid, u32> = HashMap::new();
    let mut completions: HashMap<Uuid, u32> = HashMap::new();
    let mut holding: HashMap<(String, Uuid), u32> = HashMap::new();
    let mut holder: HashMap<Uuid, String> = HashMap::new();
    let mut temp_claims = 0;
    for (task_id, event) in &events {
        match event {
            TaskEvent::TaskCreated {
                queue_id, groups, ..
            } => {
                created_tasks.insert(*task_id, (*queue_id, groups.clone()));
            }
            TaskEvent::TaskClaimed { by, at, next, .. } => {
                assert!(next);
                *claims.entry(*task_id).or_default() += 1;
                let (queue_id, task_groups) = &created_tasks[task_id];
                let held = holding.entry((by.clone(), *queue_id)).or_default();
                *held += 1;
                assert!(
                    *held <= CAPACITY,
                    "{by} held {held} tasks in a queue of capacity {CAPACITY}"
                );
                let granted = skills
                    .get(&(by.clone(), *queue_id))
                    .unwrap_or_else(|| panic!("{by} claimed in a queue they hold no grant for"));
                assert!(
                    task_groups.is_empty()
                        || task_groups.iter().any(|g| granted.contains(&g.as_str())),
                    "{by} claimed a task of groups {task_groups:?} with skills {granted:?}"
                );
                if by == "temp01" {
                    temp_claims += 1;
                    assert!(
                        *at < expires,
                        "temp01 claimed at {at}, after its grant ended"
                    );
                }
                holder.insert(*task_id, by.clone());
            }
            TaskEvent::TaskCompleted { by, .. } => {
                *completions.entry(*task_id).or_default() += 1;
                assert_eq!(Some(by), holder.get(task_id));
                let (queue_id, _) = &created_tasks[task_id];
                if let Some(held) = holding.get_mut(&(by.clone(), *queue_id)) {
                    *held -= 1;
                }
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(created_tasks.len(), 1_000);
    assert_eq!(claims.len(), 1_000);
    assert!(claims.values().all(|n| *n == 1), "a task was claimed twice");
    assert!(completions.values().all(|n| *n == 1) && completions.len() == 1_000);
    assert_eq!(per_user.values().sum::<u32>(), 1_000);
    assert_eq!(per_user["temp01"], temp_claims);
    assert!(
        temp_claims > 0,
        "temp01 claimed while its grant was in force"
    );
    assert!(temp_refused, "temp01 was refused once its grant had ended");
    Ok(())
}

fn clock_now(clock: &ManualClock) -> DateTime<Utc> {
    commands::Clock::now(clock)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn overdue_tasks_escalate_once_per_level_even_with_two_servers_checking(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, 10).await?;
    let store = EventStore::new(pool);
    let clock = ManualClock::at(t0());
    let server_a = WorkQueues::new(store.clone(), Arc::new(clock.clone()));
    let server_b = WorkQueues::new(store.clone(), Arc::new(clock.clone()));
    let dept = department(&server_a).await?;
    let q = queue(&server_a, dept, "Licensing", Distribution::Pull, 5, &[]).await?;
    grant(&server_a, q, "alice", &[], None).await?;
    // Priority 3: due after 360 minutes; the standard policy raises by 1 every 60 minutes, up
    // to level 3.
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(task(&server_a, q, 3, &[]).await?.task_id);
    }
    let claimed = server_a
        .claim(ids[0], "alice", None, &meta("alice"))
        .await?;
    let finished = server_a
        .claim(ids[1], "alice", None, &meta("alice"))
        .await?;
    server_a
        .complete(
            ids[1],
            "alice",
            "done",
            None,
            Some(finished.version),
            &meta("alice"),
        )
        .await?;
    let sla = meta("job:sla-escalation");

    let run_both = |at: DateTime<Utc>| {
        clock.set(at);
        let (a, b) = (&server_a, &server_b);
        let sla = sla.clone();
        async move {
            let (ra, rb) = tokio::join!(a.escalate_overdue(at, &sla), b.escalate_overdue(at, &sla));
            Ok::<_, anyhow::Error>(ra?.escalations + rb?.escalations)
        }
    };
    assert_eq!(run_both(t0() + minutes(359)).await?, 0, "not due yet");
    assert_eq!(
        run_both(t0() + minutes(360)).await?,
        3,
        "level 1 for the three unfinished tasks"
    );
    assert_eq!(
        run_both(t0() + minutes(361)).await?,
        0,
        "level 1 is not recorded twice"
    );
    assert_eq!(
        run_both(t0() + minutes(420)).await?,
        3,
        "level 2 an hour later"
    );
    assert_eq!(
        run_both(t0() + minutes(10_000)).await?,
        3,
        "level 3, the last"
    );
    assert_eq!(
        run_both(t0() + minutes(20_000)).await?,
        0,
        "nothing past the last level"
    );

    let log = whole_log(&store).await?;
    let mut levels: BTreeMap<Uuid, Vec<(u32, u8, u8)>> = BTreeMap::new();
    for (task_id, event) in task_events(&log)? {
        if let TaskEvent::TaskEscalated {
            level,
            priority_from,
            priority_to,
            ..
        } = event
        {
            levels.entry(task_id).or_default().push((
                level,
                priority_from.get(),
                priority_to.get(),
            ));
        }
    }
    assert!(
        !levels.contains_key(&ids[1]),
        "a completed task does not escalate"
    );
    for id in [ids[0], ids[2], ids[3]] {
        assert_eq!(levels[&id], vec![(1, 3, 4), (2, 4, 5), (3, 5, 5)]);
    }
    // The claimed task stays with its claimant while escalating.
    let mut state = Task::default();
    for e in &store.read_stream(ids[0], 0).await? {
        state = state.evolve(&eventstore::codec::decode::<Task>(e)?);
    }
    assert_eq!(state.claimant.as_deref(), Some("alice"));
    assert_eq!(claimed.version + 3, store.stream_version(ids[0]).await?);
    Ok(())
}

/// The assignee and recorded reason of each task pushed, in order.
async fn pushed(
    work: &WorkQueues,
    queue_id: Uuid,
    tasks: &[(i64, &[&str])],
) -> anyhow::Result<Vec<(Option<String>, Option<AssignmentReason>)>> {
    let mut out = Vec::new();
    for (priority, labels) in tasks {
        let written = task(work, queue_id, *priority, labels).await?;
        out.push(
            written
                .events
                .iter()
                .find_map(|e| match e {
                    TaskEvent::TaskAssigned { to, reason, .. } => {
                        Some((Some(to.clone()), Some(reason.clone())))
                    }
                    _ => None,
                })
                .unwrap_or((None, None)),
        );
    }
    Ok(out)
}

fn names(v: &[(Option<String>, Option<AssignmentReason>)]) -> Vec<&str> {
    v.iter().map(|(n, _)| n.as_deref().unwrap_or("-")).collect()
}

/// alice works DEA, bob DEA and licences, carol licences; each may hold 3 tasks.
async fn team_queue(
    work: &WorkQueues,
    dept: Uuid,
    name: &str,
    distribution: Distribution,
) -> anyhow::Result<Uuid> {
    let q = queue(work, dept, name, distribution, 3, &["dea", "license"]).await?;
    grant(work, q, "alice", &["dea"], None).await?;
    grant(work, q, "bob", &["dea", "license"], None).await?;
    grant(work, q, "carol", &["license"], None).await?;
    Ok(q)
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn each_push_strategy_assigns_as_specified_on_a_fixed_team(
    pool: PgPool,
) -> anyhow::Result<()> {
    let store = EventStore::new(pool);
    let clock = ManualClock::at(t0());
    let work = WorkQueues::new(store.clone(), Arc::new(clock.clone()));
    let dept = department(&work).await?;
    let none: &[&str] = &[];

    // Round robin: in username order after the last one assigned, skipping whoever is full.
    let q = team_queue(&work, dept, "RoundRobin", Distribution::RoundRobin).await?;
    let got = pushed(&work, q, &[(3, none), (3, none), (3, none), (3, none)]).await?;
    assert_eq!(names(&got), ["alice", "bob", "carol", "alice"]);
    assert_eq!(
        got[1].1,
        Some(AssignmentReason::RoundRobin {
            after: Some("alice".into())
        })
    );

    // Least loaded: fewest claimed; a completion frees a place.
    let q = team_queue(&work, dept, "LeastLoaded", Distribution::LeastLoaded).await?;
    let got = pushed(&work, q, &[(3, none), (3, none), (3, none), (3, none)]).await?;
    assert_eq!(names(&got), ["alice", "bob", "carol", "alice"]);
    assert_eq!(
        got[3].1,
        Some(AssignmentReason::LeastLoaded {
            claimed: 1,
            capacity: 3
        })
    );

    // Skill based: most of the task's groups covered, then fewest claimed.
    let q = team_queue(&work, dept, "SkillBased", Distribution::SkillBased).await?;
    let got = pushed(
        &work,
        q,
        &[(3, &["dea", "license"]), (3, &["license"]), (3, &["dea"])],
    )
    .await?;
    assert_eq!(names(&got), ["bob", "carol", "alice"]);
    assert_eq!(
        got[0].1,
        Some(AssignmentReason::SkillBased {
            matched: groups(&["dea", "license"])?,
            claimed: 0
        })
    );

    // Priority weighted: the smallest sum of priorities held.
    let q = team_queue(
        &work,
        dept,
        "PriorityWeighted",
        Distribution::PriorityWeighted,
    )
    .await?;
    let got = pushed(&work, q, &[(5, none), (1, none), (1, none), (2, none)]).await?;
    assert_eq!(names(&got), ["alice", "bob", "carol", "bob"]);
    assert_eq!(
        got[3].1,
        Some(AssignmentReason::PriorityWeighted {
            weighted_load: 1,
            claimed: 1
        })
    );

    // When everyone is full, the task waits in the queue, unassigned.
    let q = team_queue(&work, dept, "Full house", Distribution::LeastLoaded).await?;
    let nine = vec![(3, none); 9];
    let got = pushed(&work, q, &nine).await?;
    assert!(got.iter().all(|(n, _)| n.is_some()));
    let tenth = pushed(&work, q, &[(3, none)]).await?;
    assert_eq!(names(&tenth), ["-"]);
    Ok(())
}

/// `wq_loads` next to what `wq_tasks` holds: (user, claimed, sum of priorities); counters back
/// at zero are left out (a weight left over without a claim is not).
async fn loads(
    pool: &PgPool,
) -> anyhow::Result<(Vec<(String, i64, i64)>, Vec<(String, i64, i64)>)> {
    let kept: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT username, claimed::bigint, weight::bigint FROM wq_loads \
         WHERE claimed <> 0 OR weight <> 0 ORDER BY username",
    )
    .fetch_all(pool)
    .await?;
    let counted: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT claimant, count(*), sum(priority)::bigint FROM wq_tasks WHERE status = 'claimed' \
         GROUP BY claimant ORDER BY claimant",
    )
    .fetch_all(pool)
    .await?;
    Ok((kept, counted))
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn the_load_kept_for_claim_next_follows_every_claim_release_hand_off_and_escalation(
    pool: PgPool,
) -> anyhow::Result<()> {
    let clock = ManualClock::at(t0());
    let work = WorkQueues::new(EventStore::new(pool.clone()), Arc::new(clock.clone()));
    let dept = department(&work).await?;
    let q = queue(&work, dept, "Licensing", Distribution::Pull, 2, &[]).await?;
    grant(&work, q, "alice", &[], None).await?;
    grant(&work, q, "bob", &[], None).await?;
    let mut ids = Vec::new();
    for priority in [5, 4, 3, 2, 1] {
        ids.push(task(&work, q, priority, &[]).await?.task_id);
    }
    let step = |what: &'static str| {
        let pool = pool.clone();
        async move {
            let (kept, counted) = loads(&pool).await?;
            assert_eq!(kept, counted, "after {what}");
            anyhow::Ok(kept)
        }
    };

    let first = work.claim_next("alice", None, None, &meta("alice")).await?;
    let second = work.claim_next("alice", None, None, &meta("alice")).await?;
    assert_eq!((first.task_id, second.task_id), (ids[0], ids[1]));
    assert_eq!(step("two claims").await?, vec![("alice".into(), 2, 9)]);
    assert!(
        matches!(
            work.claim_next("alice", None, None, &meta("alice")).await,
            Err(CommandError::Rejected(WorkQueueRefusal::NothingToClaim(
                NothingToClaim::AtCapacity
            )))
        ),
        "the kept load stops a third claim at capacity 2"
    );

    work.complete(
        ids[0],
        "alice",
        "done",
        None,
        Some(first.version),
        &meta("alice"),
    )
    .await?;
    assert_eq!(step("a completion").await?, vec![("alice".into(), 1, 4)]);
    let third = work.claim_next("alice", None, None, &meta("alice")).await?;
    assert_eq!(third.task_id, ids[2], "room again after the completion");

    work.unclaim(ids[2], "alice", Some(third.version), &meta("alice"))
        .await?;
    assert_eq!(step("an unclaim").await?, vec![("alice".into(), 1, 4)]);

    let handed = Reassignment {
        by: "admin".into(),
        by_admin: true,
        to: "bob".into(),
        reason: "alice is away".into(),
    };
    work.reassign(ids[1], &handed, None, &meta("admin")).await?;
    assert_eq!(step("a reassignment").await?, vec![("bob".into(), 1, 4)]);

    // Priority 4 is due after the standard SLA; the escalation raises it to 5.
    let report = work
        .escalate_overdue(t0() + minutes(100_000), &meta("job:sla-escalation"))
        .await?;
    assert!(report.escalations > 0);
    assert_eq!(step("an escalation").await?, vec![("bob".into(), 1, 5)]);

    work.cancel(ids[1], "admin", true, "duplicate", None, &meta("admin"))
        .await?;
    assert_eq!(step("a cancellation").await?, Vec::new());
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn raising_a_queues_last_escalation_level_lets_tasks_held_at_the_old_last_level_escalate(
    pool: PgPool,
) -> anyhow::Result<()> {
    let clock = ManualClock::at(t0());
    let work = WorkQueues::new(EventStore::new(pool.clone()), Arc::new(clock.clone()));
    let dept = department(&work).await?;
    let mut config = QueueConfig {
        department_id: dept,
        capacity: Capacity {
            per_user: 5,
            total: None,
        },
        sla: SlaPolicy::standard(),
        escalation: EscalationPolicy {
            max_level: 1,
            ..EscalationPolicy::standard()
        },
        distribution: Distribution::Pull,
        groups: Vec::new(),
    };
    let q = work
        .create_queue("Licensing", config.clone(), &meta("admin"))
        .await?
        .stream_id;
    // Priority 3: due after 360 minutes.
    let id = task(&work, q, 3, &[]).await?.task_id;
    let sla = meta("job:sla-escalation");
    let escalations = |at: DateTime<Utc>| {
        let (work, sla) = (&work, &sla);
        async move { anyhow::Ok(work.escalate_overdue(at, sla).await?.escalations) }
    };
    assert_eq!(
        escalations(t0() + minutes(360)).await?,
        1,
        "level 1, the last"
    );
    assert_eq!(
        escalations(t0() + minutes(600)).await?,
        0,
        "nothing past it"
    );

    config.escalation.max_level = 3;
    clock.set(t0() + minutes(601));
    work.configure_queue(q, config, &meta("admin")).await?;
    assert_eq!(
        escalations(t0() + minutes(602)).await?,
        2,
        "levels 2 and 3, both overdue under the new policy"
    );
    let levels: Vec<u32> = task_events(&whole_log(&EventStore::new(pool.clone())).await?)?
        .into_iter()
        .filter(|(task_id, _)| *task_id == id)
        .filter_map(|(_, e)| match e {
            TaskEvent::TaskEscalated { level, .. } => Some(level),
            _ => None,
        })
        .collect();
    assert_eq!(levels, vec![1, 2, 3]);
    assert_eq!(escalations(t0() + minutes(20_000)).await?, 0);
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn two_users_swapping_tasks_at_the_same_moment_never_deadlock_on_their_loads(
    _: PgPoolOptions,
    connect_options: PgConnectOptions,
) -> anyhow::Result<()> {
    let pool = own_pool(connect_options, 6).await?;
    let work = WorkQueues::new(
        EventStore::new(pool.clone()),
        Arc::new(ManualClock::at(t0())),
    );
    let dept = department(&work).await?;
    let q = queue(&work, dept, "Licensing", Distribution::Pull, 5, &[]).await?;
    grant(&work, q, "alice", &[], None).await?;
    grant(&work, q, "bob", &[], None).await?;
    let a = task(&work, q, 3, &[]).await?.task_id;
    let b = task(&work, q, 3, &[]).await?.task_id;
    work.claim(a, "alice", None, &meta("alice")).await?;
    work.claim(b, "bob", None, &meta("bob")).await?;
    let to = |user: &str| Reassignment {
        by: "admin".into(),
        by_admin: true,
        to: user.into(),
        reason: "swap".into(),
    };
    for round in 0..200 {
        // Each hand-off takes both users' counters: opposite directions at once.
        let (first, second) = if round % 2 == 0 {
            ("bob", "alice")
        } else {
            ("alice", "bob")
        };
        let (to_first, to_second, admin) = (to(first), to(second), meta("admin"));
        let (ra, rb) = tokio::join!(
            work.reassign(a, &to_first, None, &admin),
            work.reassign(b, &to_second, None, &admin),
        );
        ra?;
        rb?;
    }
    let (kept, counted) = loads(&pool).await?;
    assert_eq!(kept, counted);
    assert_eq!(kept, vec![("alice".into(), 1, 3), ("bob".into(), 1, 3)]);
    Ok(())
}
