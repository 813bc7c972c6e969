//! What every work-queue command shares: loading streams outside and inside a transaction,
//! appending on the transaction, and the `wq_*` rows and locks.

use super::*;

impl WorkQueues {
    /// `id`'s aggregate as `handler`'s cache has it, or `None` when no stream of this kind has
    /// that id.
    pub(super) async fn load_existing<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        id: Uuid,
    ) -> Result<Option<A>, WorkQueueError> {
        Ok(self
            .load_versioned(handler, id)
            .await?
            .map(|(_, state)| state))
    }

    /// [`load_existing`](Self::load_existing) with the version it was read at.
    pub(super) async fn load_versioned<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        id: Uuid,
    ) -> Result<Option<(u64, A)>, WorkQueueError> {
        match handler.load(id).await {
            Ok((version, state)) => Ok((version > 0).then_some((version, state))),
            Err(CommandError::Store(StoreError::StreamTypeMismatch { .. })) => Ok(None),
            Err(CommandError::Store(e)) => Err(e.into()),
            Err(CommandError::Codec(e)) => Err(e.into()),
            // A load neither decides nor retries.
            Err(CommandError::Rejected(_) | CommandError::TooManyConflicts { .. }) => Ok(None),
        }
    }

    pub(super) async fn exists<A: Aggregate>(
        &self,
        handler: &CommandHandler<A>,
        id: Uuid,
    ) -> Result<bool, WorkQueueError> {
        Ok(self.load_existing(handler, id).await?.is_some())
    }

    /// Loads an aggregate on the transaction. A stream of another type reads as absent (its
    /// version is still returned, so that an append to it fails).
    pub(super) async fn load_in<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
    ) -> Result<(u64, A), WorkQueueError> {
        let recorded = self.store.read_stream_in(conn, stream_id).await?;
        fold(&recorded)
    }

    /// Locks a task's row and reads its stream under that lock: its queue, version and state,
    /// or `None` for no task.
    pub(super) async fn locked_task(
        &self,
        conn: &mut PgConnection,
        task_id: Uuid,
    ) -> Result<Option<(Uuid, u64, Task)>, WorkQueueError> {
        let Some((queue_id, row_version)) = lock_task(conn, task_id).await? else {
            return Ok(None);
        };
        let (version, task) = self.load_in::<Task>(conn, task_id).await?;
        check_row_version(task_id, row_version, version)?;
        Ok(Some((queue_id, version, task)))
    }

    /// Appends `events` at `version` on the transaction; returns the new version and cursor.
    pub(super) async fn append_in<A: Aggregate>(
        &self,
        conn: &mut PgConnection,
        stream_id: Uuid,
        version: u64,
        events: &[A::Event],
        metadata: &Metadata,
    ) -> Result<(u64, Option<Cursor>), WorkQueueError> {
        if events.is_empty() {
            return Ok((version, None));
        }
        let encoded = events
            .iter()
            .map(codec::encode::<A>)
            .collect::<Result<Vec<_>, _>>()?;
        let expected = if version == 0 {
            ExpectedVersion::NoStream
        } else {
            ExpectedVersion::Exact(version)
        };
        let appended = self
            .store
            .append_in(
                conn,
                stream_id,
                A::STREAM_TYPE,
                expected,
                &encoded,
                metadata,
            )
            .await?;
        Ok((appended.last_version, appended.cursor))
    }
}

// ---------------------------------------------------------------------------------------------
// The wq_* tables
// ---------------------------------------------------------------------------------------------

/// A transaction-scoped advisory lock on `(kind, key)`.
pub(super) async fn lock_key(
    conn: &mut PgConnection,
    kind: &str,
    key: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(advisory_key(kind, key))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Namespace of the advisory-lock keys of work-queue commands.
pub(super) const LOCK_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_2a9e_71b4_4d38_9c26_e8a1_0b7d_3f54);

/// The 64-bit advisory-lock key of `(kind, key)`: computed here rather than by PostgreSQL, so
/// that a transaction can begin with the lock in its `BEGIN` round trip (see
/// [`begin_as_user`]).
pub(super) fn advisory_key(kind: &str, key: &str) -> i64 {
    let id = Uuid::new_v5(&LOCK_NAMESPACE, format!("{kind}:{key}").as_bytes());
    let (high, _) = id.as_u64_pair();
    i64::from_ne_bytes(high.to_ne_bytes())
}

/// Begins a transaction holding `user`'s lock, in one round trip: the key is a number, so it
/// can go into the `BEGIN` statement itself without any quoting.
pub(super) async fn begin_as_user(pool: &sqlx::PgPool, user: &str) -> Result<Tx, sqlx::Error> {
    let key = advisory_key("user", user);
    pool.begin_with(format!("BEGIN; SELECT pg_advisory_xact_lock({key})"))
        .await
}

/// The claim an idempotency key already made, if any.
pub(super) async fn claimed_with_key(
    conn: &mut PgConnection,
    user: &str,
    key: &str,
) -> Result<Option<TaskWritten>, sqlx::Error> {
    let row: Option<(Uuid, i64, i64, i64)> = sqlx::query_as(
        "SELECT task_id, version, transaction_id, position FROM wq_claim_keys \
         WHERE username = $1 AND idempotency_key = $2",
    )
    .bind(user)
    .bind(key)
    .fetch_optional(conn)
    .await?;
    Ok(row.map(|(task_id, version, tx, position)| TaskWritten {
        task_id,
        version: to_u64(version),
        events: Vec::new(),
        cursor: Some(Cursor::new(to_u64(tx), position)),
        replayed: true,
    }))
}

/// The lock every command that changes what a user holds, or may hold, takes.
pub(super) async fn lock_user(conn: &mut PgConnection, user: &str) -> Result<(), sqlx::Error> {
    lock_key(conn, "user", user).await
}

/// Locks a task's row; its queue and the version the row reflects, or `None` for no task.
pub(super) async fn lock_task(
    conn: &mut PgConnection,
    task_id: Uuid,
) -> Result<Option<(Uuid, u64)>, sqlx::Error> {
    let row: Option<(Uuid, i64)> =
        sqlx::query_as("SELECT queue_id, version FROM wq_tasks WHERE task_id = $1 FOR UPDATE")
            .bind(task_id)
            .fetch_optional(conn)
            .await?;
    Ok(row.map(|(q, v)| (q, to_u64(v))))
}

/// An aggregate's version and state from its recorded events (a stream of another type folds to
/// the empty state, which refuses whatever it is asked).
pub(super) fn fold<A: Aggregate>(recorded: &[RecordedEvent]) -> Result<(u64, A), WorkQueueError> {
    let version = recorded.last().map_or(0, |e| e.version);
    if recorded
        .first()
        .is_some_and(|e| e.stream_type != A::STREAM_TYPE)
    {
        return Ok((version, A::default()));
    }
    let mut state = A::default();
    for event in recorded {
        state = state.evolve(&codec::decode::<A>(event)?);
    }
    Ok((version, state))
}

/// The row and the stream must agree; they are written together, so a difference means
/// something wrote the stream around this module.
pub(super) fn check_row_version(
    task_id: Uuid,
    row: u64,
    stream: u64,
) -> Result<(), WorkQueueError> {
    if row == stream {
        return Ok(());
    }
    Err(StoreError::WrongExpectedVersion {
        stream_id: task_id,
        expected: ExpectedVersion::Exact(row),
        actual: stream,
    }
    .into())
}

/// `user`'s standing in a queue at `now`, from their grants in force.
pub(super) async fn standing_in(
    conn: &mut PgConnection,
    queue_id: Uuid,
    user: &str,
    now: DateTime<Utc>,
) -> Result<Standing, sqlx::Error> {
    let grants: Vec<(String, Vec<String>)> = sqlx::query_as(
        "SELECT role, skills FROM wq_grants WHERE queue_id = $1 AND username = $2 \
         AND valid_from <= $3 AND (valid_until IS NULL OR valid_until > $3)",
    )
    .bind(queue_id)
    .bind(user)
    .bind(now)
    .fetch_all(conn)
    .await?;
    Ok(Standing::from_grants(
        grants.iter().map(|(role, skills)| grant_row(role, skills)),
    ))
}

/// A grant's role and skills, as [`Standing::from_grants`] takes them.
pub(super) type GrantRow = (QueueRole, Vec<GroupLabel>);

/// A `wq_grants` row's role and skills, as the domain has them.
pub(super) fn grant_row(role: &str, skills: &[String]) -> GrantRow {
    (
        QueueRole::parse(role).unwrap_or(QueueRole::Member),
        skills
            .iter()
            .filter_map(|s| GroupLabel::parse(s).ok())
            .collect(),
    )
}

/// How many of a queue's tasks `user` holds, and the sum of their priorities.
pub(super) async fn load_in_queue(
    conn: &mut PgConnection,
    queue_id: Uuid,
    user: &str,
) -> Result<(u32, u32), sqlx::Error> {
    let load: Option<(i32, i32)> = sqlx::query_as(
        "SELECT claimed, weight FROM wq_loads WHERE username = $1 AND queue_id = $2",
    )
    .bind(user)
    .bind(queue_id)
    .fetch_optional(conn)
    .await?;
    let (n, weight) = load.unwrap_or((0, 0));
    Ok((count(i64::from(n)), count(i64::from(weight))))
}

pub(super) async fn per_user_capacity(
    conn: &mut PgConnection,
    queue_id: Uuid,
) -> Result<u32, sqlx::Error> {
    let capacity: Option<i32> =
        sqlx::query_scalar("SELECT per_user_capacity FROM wq_queues WHERE queue_id = $1")
            .bind(queue_id)
            .fetch_optional(conn)
            .await?;
    Ok(capacity.and_then(|c| u32::try_from(c).ok()).unwrap_or(0))
}

/// A queue's escalation policy (the standard one for a queue without a configuration).
pub(super) fn escalation_policy(queue: &Queue) -> EscalationPolicy {
    queue
        .config
        .as_ref()
        .map_or_else(EscalationPolicy::standard, |c| c.escalation)
}

/// When the SLA check should next look at `task`: `None` once finished or at the last level.
pub(super) fn next_escalation(task: &Task, policy: &EscalationPolicy) -> Option<DateTime<Utc>> {
    if task.status.is_finished() || task.escalation_level >= policy.max_level {
        return None;
    }
    let due = task.due_at?;
    Some(
        due + chrono::Duration::minutes(
            i64::from(policy.repeat_every_minutes) * i64::from(task.escalation_level),
        ),
    )
}

/// Writes a task's row from its state. `next`: `Some(x)` sets the next escalation time, `None`
/// leaves it as it is.
pub(super) async fn put_task_row(
    conn: &mut PgConnection,
    task_id: Uuid,
    task: &Task,
    version: u64,
    next: Option<Option<DateTime<Utc>>>,
) -> Result<(), WorkQueueError> {
    let queue_id = task.queue_id.ok_or(TaskError::NotFound)?;
    let group_keys: Vec<String> = task
        .groups
        .iter()
        .map(|g| format!("{queue_id}:{g}"))
        .collect();
    sqlx::query(
        "INSERT INTO wq_tasks (task_id, queue_id, case_id, status, priority, created_at, due_at, claimant, \
                               escalation_level, next_escalation_at, group_keys, version) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (task_id) DO UPDATE SET case_id = $3, status = $4, priority = $5, claimant = $8, \
             escalation_level = $9, \
             next_escalation_at = CASE WHEN $13 THEN $10 ELSE wq_tasks.next_escalation_at END, \
             version = $12",
    )
    .bind(task_id)
    .bind(queue_id)
    .bind(task.case_id)
    .bind(task.status.as_str())
    .bind(i16::from(task.priority.map_or(1, Priority::get)))
    .bind(task.created_at)
    .bind(task.due_at)
    .bind(task.claimant.as_deref().filter(|_| task.status == TaskStatus::Claimed))
    .bind(i32::try_from(task.escalation_level).unwrap_or(i32::MAX))
    .bind(next.flatten())
    .bind(&group_keys)
    .bind(to_i64(version))
    .bind(next.is_some())
    .execute(conn)
    .await?;
    Ok(())
}

/// Mirrors a queue event into `wq_queues` / `wq_grants`.
pub(super) async fn mirror_queue_event(
    conn: &mut PgConnection,
    queue_id: Uuid,
    event: &QueueEvent,
) -> Result<(), sqlx::Error> {
    match event {
        QueueEvent::QueueCreated { config, .. } | QueueEvent::QueueConfigured { config, .. } => {
            sqlx::query(
                "INSERT INTO wq_queues (queue_id, per_user_capacity, total_capacity, distribution) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (queue_id) DO UPDATE \
                 SET per_user_capacity = $2, total_capacity = $3, distribution = $4",
            )
            .bind(queue_id)
            .bind(i32::try_from(config.capacity.per_user).unwrap_or(i32::MAX))
            .bind(config.capacity.total.map(|t| i32::try_from(t).unwrap_or(i32::MAX)))
            .bind(config.distribution.as_str())
            .execute(conn)
            .await?;
        }
        QueueEvent::QueueAccessGranted { grant, .. } => {
            sqlx::query(
                "INSERT INTO wq_grants (grant_id, queue_id, username, role, skills, valid_from, valid_until) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(grant.grant_id)
            .bind(queue_id)
            .bind(grant.username.as_str())
            .bind(grant.role.as_str())
            .bind(
                grant
                    .skills
                    .iter()
                    .map(|s| s.as_str().to_owned())
                    .collect::<Vec<_>>(),
            )
            .bind(grant.valid_from)
            .bind(grant.valid_until)
            .execute(conn)
            .await?;
        }
        QueueEvent::QueueAccessRevoked { grant_id, .. } => {
            sqlx::query("DELETE FROM wq_grants WHERE grant_id = $1")
                .bind(grant_id)
                .execute(conn)
                .await?;
        }
    }
    Ok(())
}

pub(super) fn count(n: i64) -> u32 {
    u32::try_from(n.max(0)).unwrap_or(u32::MAX)
}

pub(super) fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}
