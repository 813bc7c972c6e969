//! Tasks: creation (with push distribution), and the commands on one task under its row's
//! lock (claim, unclaim, complete, cancel, reassign, link to a case).

use super::*;

impl WorkQueues {
    /// Creates a task; in a push queue it is assigned at once by the queue's strategy. A resend
    /// (same task id, as derived from an idempotency key) returns the task as it is.
    pub async fn create_task(
        &self,
        new: NewTask,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let (mut tx, config, last_assigned) = self.begin_creation(&new).await?;
        let recorded = self.store.read_stream_in(&mut tx, new.task_id).await?;
        let (task_version, existing) = fold::<Task>(&recorded)?;
        if task_version > 0 {
            // A resend of a creation that already happened (or an id of something else): the
            // answer is what the creation wrote, the events of the stream's first transaction.
            if existing.exists() && existing.queue_id == Some(new.queue_id) {
                let first_tx = recorded.first().map(|e| e.cursor.transaction_id);
                let created: Vec<&RecordedEvent> = recorded
                    .iter()
                    .take_while(|e| Some(e.cursor.transaction_id) == first_tx)
                    .collect();
                return Ok(TaskWritten {
                    task_id: new.task_id,
                    version: created.last().map_or(task_version, |e| e.version),
                    events: created
                        .iter()
                        .map(|e| codec::decode::<Task>(e))
                        .collect::<Result<_, _>>()?,
                    cursor: created.last().map(|e| e.cursor),
                    replayed: true,
                });
            }
            return Err(TaskError::AlreadyExists.into());
        }
        // Counted under the queue's row lock, which every creation in a queue with a total
        // holds exclusively.
        let unfinished = match config.as_ref().and_then(|c| c.capacity.total) {
            Some(_) => count(
                sqlx::query_scalar(
                    "SELECT count(*) FROM wq_tasks WHERE queue_id = $1 AND status IN ('open', 'claimed')",
                )
                .bind(new.queue_id)
                .fetch_one(&mut *tx)
                .await?,
            ),
            None => 0,
        };
        let now = self.clock.now();
        let case = match new.case_id {
            Some(case_id) => {
                lock_key(&mut tx, "case", &case_id.to_string()).await?;
                let (case_version, case) = self.load_in::<Case>(&mut tx, case_id).await?;
                Some((case_version, case_id, case))
            }
            None => None,
        };
        let command = TaskCommand::Create {
            queue: QueueLookup {
                queue_id: new.queue_id,
                config: config.clone(),
                unfinished,
            },
            title: new.title,
            priority: new.priority,
            groups: new.groups,
            case: case.as_ref().map(|(v, id, c)| CaseLookup {
                case_id: *id,
                exists: *v > 0 && c.exists(),
                open: c.is_open(),
            }),
            payload: new.payload,
        };
        let mut events = Task::default().decide(&command, now)?;
        let mut task = domain::fold::<Task>(&events);
        let config = config.ok_or(TaskError::UnknownQueue {
            queue_id: new.queue_id,
        })?;

        // Push distribution, under the queue's row lock (taken above).
        let mut assigned_to = None;
        if config.distribution.is_push() {
            if let Some(choice) = self
                .choose_assignee(
                    &mut tx,
                    new.queue_id,
                    &config,
                    &task,
                    last_assigned.as_deref(),
                    now,
                )
                .await?
            {
                let assign = TaskCommand::Assign {
                    to: choice.username.clone(),
                    reason: choice.reason,
                };
                let more = task.decide(&assign, now)?;
                task = more.iter().fold(task, |t, e| t.evolve(e));
                events.extend(more);
                assigned_to = Some(choice.username);
            }
        }

        let (version, cursor) = self
            .append_in::<Task>(&mut tx, new.task_id, 0, &events, metadata)
            .await?;
        if let Some((case_version, case_id, case)) = case {
            let linked = case.decide(
                &CaseCommand::LinkTask {
                    task_id: new.task_id,
                },
                now,
            )?;
            self.append_in::<Case>(&mut tx, case_id, case_version, &linked, metadata)
                .await?;
        }
        put_task_row(
            &mut tx,
            new.task_id,
            &task,
            version,
            Some(next_escalation(&task, &config.escalation)),
        )
        .await?;
        if let Some(to) = &assigned_to {
            sqlx::query("UPDATE wq_queues SET last_assigned = $2 WHERE queue_id = $1")
                .bind(new.queue_id)
                .bind(to)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(TaskWritten {
            task_id: new.task_id,
            version,
            events,
            cursor,
            replayed: false,
        })
    }

    /// Begins a task creation's transaction: the task id's lock (two retries of one creation,
    /// one idempotency key, meet there; the second finds the task the first made), then the
    /// queue's row, and the queue's configuration as of that lock. The row is held shared, so
    /// creations in one queue run side by side while a reconfiguration waits for them (and
    /// they for it); a queue that pushes tasks or limits its total holds it exclusively, since
    /// each creation moves its round-robin place or counts its unfinished tasks. If the queue's
    /// stream moved on between the configuration's read and the lock, a reconfiguration (or a
    /// grant) came in between: read it again and start over.
    pub(super) async fn begin_creation(
        &self,
        new: &NewTask,
    ) -> Result<(Tx, Option<QueueConfig>, Option<String>), WorkQueueError> {
        for _ in 0..RetryPolicy::DEFAULT.max_attempts {
            let read = self.load_versioned(&self.queues, new.queue_id).await?;
            let mut tx = self.store.pool().begin().await?;
            lock_key(&mut tx, "task", &new.task_id.to_string()).await?;
            let Some((queue_version, config)) =
                read.and_then(|(v, queue)| queue.config.map(|c| (v, c)))
            else {
                return Ok((tx, None, None));
            };
            let exclusive = config.distribution.is_push() || config.capacity.total.is_some();
            let last_assigned: Option<Option<String>> = sqlx::query_scalar(if exclusive {
                "SELECT last_assigned FROM wq_queues WHERE queue_id = $1 FOR NO KEY UPDATE"
            } else {
                "SELECT last_assigned FROM wq_queues WHERE queue_id = $1 FOR SHARE"
            })
            .bind(new.queue_id)
            .fetch_optional(&mut *tx)
            .await?;
            // A reconfiguration writes the row, so under its lock the stream holds still as far
            // as the configuration goes; a grant in between also moves the version, and costs
            // one more round.
            if self.store.stream_version_in(&mut *tx, new.queue_id).await? == queue_version {
                return Ok((tx, Some(config), last_assigned.flatten()));
            }
        }
        Err(RetryPolicy::DEFAULT.exhausted())
    }

    /// Push distribution's candidates (members with a grant in force, each locked so their
    /// load holds until commit) and the strategy's choice; `None` when nobody may take it.
    pub(super) async fn choose_assignee(
        &self,
        tx: &mut Tx,
        queue_id: Uuid,
        config: &QueueConfig,
        task: &Task,
        last_assigned: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<Option<Choice>, WorkQueueError> {
        let members: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT username FROM wq_grants WHERE queue_id = $1 AND valid_from <= $2 \
             AND (valid_until IS NULL OR valid_until > $2)",
        )
        .bind(queue_id)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        // Every member's lock, in one statement and in key order (the order any two
        // transactions taking several user locks agree on), so that their loads hold.
        let mut keys: Vec<i64> = members.iter().map(|m| advisory_key("user", m)).collect();
        keys.sort_unstable();
        keys.dedup();
        sqlx::query("SELECT pg_advisory_xact_lock(k) FROM unnest($1::bigint[]) AS k")
            .bind(&keys)
            .execute(&mut **tx)
            .await?;
        // Then, in one query, their grants in force and their loads.
        let rows: Vec<(String, String, Vec<String>, i64, i64)> = sqlx::query_as(
            "SELECT g.username, g.role, g.skills, coalesce(l.claimed, 0)::bigint, coalesce(l.weight, 0)::bigint \
             FROM wq_grants g \
             LEFT JOIN wq_loads l ON l.username = g.username AND l.queue_id = g.queue_id \
             WHERE g.queue_id = $1 AND g.valid_from <= $2 AND (g.valid_until IS NULL OR g.valid_until > $2) \
             ORDER BY g.username",
        )
        .bind(queue_id)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        let mut grants: BTreeMap<String, (Vec<GrantRow>, u32, u32)> = BTreeMap::new();
        for (username, role, skills, claimed, weight) in rows {
            let entry = grants
                .entry(username)
                .or_insert_with(|| (Vec::new(), count(claimed), count(weight)));
            entry.0.push(grant_row(&role, &skills));
        }
        let candidates: Vec<Candidate> = grants
            .into_iter()
            .map(|(username, (held, claimed, weighted_load))| Candidate {
                username,
                skills: Standing::from_grants(held).skills,
                claimed,
                weighted_load,
            })
            .collect();
        match distribution::choose(
            config.distribution,
            config.capacity.per_user,
            &task.groups,
            &candidates,
            last_assigned,
        ) {
            Ok(choice) => Ok(Some(choice)),
            Err(NoChoice::NotPush | NoChoice::NoMembers | NoChoice::NobodyEligible) => Ok(None),
        }
    }

    /// Claims a given task.
    pub async fn claim(
        &self,
        task_id: Uuid,
        user: &str,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        self.task_command(task_id, expected, metadata, TaskRequest::Claim { user })
            .await
    }

    pub async fn unclaim(
        &self,
        task_id: Uuid,
        user: &str,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let command = TaskCommand::Unclaim {
            user: user.to_owned(),
        };
        self.task_command(task_id, expected, metadata, TaskRequest::Ready(command))
            .await
    }

    pub async fn complete(
        &self,
        task_id: Uuid,
        user: &str,
        outcome: &str,
        note: Option<&str>,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let command = TaskCommand::Complete {
            user: user.to_owned(),
            outcome: outcome.to_owned(),
            note: note.map(str::to_owned),
        };
        self.task_command(task_id, expected, metadata, TaskRequest::Ready(command))
            .await
    }

    /// Cancels a task: `by` must be an admin (`by_admin`), a lead of its queue or its claimant.
    pub async fn cancel(
        &self,
        task_id: Uuid,
        by: &str,
        by_admin: bool,
        reason: &str,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let request = TaskRequest::Cancel {
            by,
            by_admin,
            reason,
        };
        self.task_command(task_id, expected, metadata, request)
            .await
    }

    /// Delegates or reassigns a task to `to` (an admin, or a lead of the task's queue).
    pub async fn reassign(
        &self,
        task_id: Uuid,
        request: &Reassignment,
        expected: Option<u64>,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        self.task_command(task_id, expected, metadata, TaskRequest::Reassign(request))
            .await
    }

    /// Links an existing task to a case (both streams in one transaction).
    pub async fn link_task_to_case(
        &self,
        task_id: Uuid,
        case_id: Uuid,
        metadata: &Metadata,
    ) -> Result<TaskWritten, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        let Some((_, version, task)) = self.locked_task(&mut tx, task_id).await? else {
            return Err(TaskError::NotFound.into());
        };
        lock_key(&mut tx, "case", &case_id.to_string()).await?;
        let (case_version, case) = self.load_in::<Case>(&mut tx, case_id).await?;
        let lookup = CaseLookup {
            case_id,
            exists: case_version > 0 && case.exists(),
            open: case.is_open(),
        };
        let now = self.clock.now();
        let events = task.decide(&TaskCommand::LinkCase { case: lookup }, now)?;
        if events.is_empty() {
            return Ok(TaskWritten {
                task_id,
                version,
                events,
                cursor: None,
                replayed: false,
            });
        }
        let case_events = case.decide(&CaseCommand::LinkTask { task_id }, now)?;
        let task = events.iter().fold(task, |t, e| t.evolve(e));
        let (version, cursor) = self
            .append_in::<Task>(&mut tx, task_id, version, &events, metadata)
            .await?;
        let (_, case_cursor) = self
            .append_in::<Case>(&mut tx, case_id, case_version, &case_events, metadata)
            .await?;
        put_task_row(&mut tx, task_id, &task, version, None).await?;
        tx.commit().await?;
        Ok(TaskWritten {
            task_id,
            version,
            events,
            cursor: case_cursor.or(cursor),
            replayed: false,
        })
    }

    /// One command on an existing task, under its row lock: `expected` (the version the client
    /// saw) must still be current; `build` makes the command from look-ups on the transaction.
    pub(super) async fn task_command(
        &self,
        task_id: Uuid,
        expected: Option<u64>,
        metadata: &Metadata,
        request: TaskRequest<'_>,
    ) -> Result<TaskWritten, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        let Some((queue_id, version, task)) = self.locked_task(&mut tx, task_id).await? else {
            return Err(TaskError::NotFound.into());
        };
        if let Some(expected) = expected.filter(|e| *e != version) {
            return Err(CommandError::Rejected(WorkQueueRefusal::StaleVersion {
                expected,
                actual: version,
            }));
        }
        let now = self.clock.now();
        let command = request.into_command(&mut tx, queue_id, &task, now).await?;
        let events = task.decide(&command, now)?;
        if events.is_empty() {
            return Ok(TaskWritten {
                task_id,
                version,
                events,
                cursor: None,
                replayed: false,
            });
        }
        let task = events.iter().fold(task, |t, e| t.evolve(e));
        let (version, cursor) = self
            .append_in::<Task>(&mut tx, task_id, version, &events, metadata)
            .await?;
        let next = task.status.is_finished().then_some(None);
        put_task_row(&mut tx, task_id, &task, version, next).await?;
        if task.status.is_finished() {
            // A workflow step waiting for this task moves on, whatever happens after commit.
            crate::workflows::task_finished(&mut tx, task_id).await?;
        }
        tx.commit().await?;
        Ok(TaskWritten {
            task_id,
            version,
            events,
            cursor,
            replayed: false,
        })
    }
}

/// A task command, or what is needed to make it from look-ups under the task's lock.
pub(super) enum TaskRequest<'a> {
    Ready(TaskCommand),
    Claim {
        user: &'a str,
    },
    Reassign(&'a Reassignment),
    Cancel {
        by: &'a str,
        by_admin: bool,
        reason: &'a str,
    },
}

impl TaskRequest<'_> {
    pub(super) async fn into_command(
        self,
        tx: &mut PgConnection,
        queue_id: Uuid,
        task: &Task,
        now: DateTime<Utc>,
    ) -> Result<TaskCommand, WorkQueueError> {
        Ok(match self {
            TaskRequest::Ready(command) => command,
            TaskRequest::Cancel {
                by,
                by_admin,
                reason,
            } => {
                let authorized = by_admin
                    || task.claimant.as_deref() == Some(by)
                    || standing_in(tx, queue_id, by, now).await?.lead;
                TaskCommand::Cancel {
                    by: by.to_owned(),
                    authorized,
                    reason: reason.to_owned(),
                }
            }
            TaskRequest::Claim { user } => {
                lock_user(tx, user).await?;
                let standing = standing_in(tx, queue_id, user, now).await?;
                let capacity = per_user_capacity(tx, queue_id).await?;
                let (claimed, _) = load_in_queue(tx, queue_id, user).await?;
                TaskCommand::Claim {
                    user: user.to_owned(),
                    standing,
                    load: Load { claimed, capacity },
                    next: false,
                }
            }
            TaskRequest::Reassign(request) => {
                let by = standing_in(tx, queue_id, &request.by, now).await?;
                lock_user(tx, &request.to).await?;
                let to_standing = standing_in(tx, queue_id, &request.to, now).await?;
                let capacity = per_user_capacity(tx, queue_id).await?;
                let (claimed, _) = load_in_queue(tx, queue_id, &request.to).await?;
                TaskCommand::Reassign {
                    by: request.by.clone(),
                    authorized: request.by_admin || by.lead,
                    to: request.to.clone(),
                    to_standing,
                    to_load: Load { claimed, capacity },
                    reason: request.reason.clone(),
                }
            }
        })
    }
}
