//! SLA escalation of overdue tasks, in batches.

use super::*;

/// The most tasks one SLA run looks at, so a backlog is worked off over several runs.
pub(super) const ESCALATION_BATCH: i64 = 1_000;

impl WorkQueues {
    /// Escalates every open or claimed task whose next escalation time has come: one
    /// `TaskEscalated` per level reached, priority raised by its queue's policy. Safe to run
    /// from several servers at once: each task is decided under its row lock from its own
    /// events, and a level already recorded is not recorded again.
    pub async fn escalate_overdue(
        &self,
        now: DateTime<Utc>,
        metadata: &Metadata,
    ) -> Result<EscalationReport, WorkQueueError> {
        let due: Vec<(Uuid, Uuid)> = sqlx::query_as(
            "SELECT task_id, queue_id FROM wq_tasks WHERE next_escalation_at <= $1 \
             ORDER BY next_escalation_at LIMIT $2",
        )
        .bind(now)
        .bind(ESCALATION_BATCH)
        .fetch_all(self.store.pool())
        .await?;
        let mut report = EscalationReport::default();
        // Each queue's policy and the queue stream's version it was read at; each task checks
        // the version again under its row lock.
        let mut policies: BTreeMap<Uuid, (u64, EscalationPolicy)> = BTreeMap::new();
        for (task_id, queue_id) in due {
            report.checked += 1;
            let known = match policies.get(&queue_id) {
                Some(known) => *known,
                None => self
                    .load_versioned(&self.queues, queue_id)
                    .await?
                    .map_or((0, EscalationPolicy::standard()), |(v, queue)| {
                        (v, escalation_policy(&queue))
                    }),
            };
            match self
                .escalate_one(task_id, queue_id, known, now, metadata)
                .await
            {
                Ok((n, current)) => {
                    report.escalations += n;
                    policies.insert(queue_id, current);
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::warn!(%task_id, %error, "escalating a task failed");
                }
            }
        }
        Ok(report)
    }

    /// Escalates one task under its row lock; returns the events written and the queue's
    /// policy as it was used, with the queue stream's version.
    pub(super) async fn escalate_one(
        &self,
        task_id: Uuid,
        queue_id: Uuid,
        known: (u64, EscalationPolicy),
        now: DateTime<Utc>,
        metadata: &Metadata,
    ) -> Result<(u64, (u64, EscalationPolicy)), WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        let Some((_, version, task)) = self.locked_task(&mut tx, task_id).await? else {
            return Ok((0, known));
        };
        // A reconfiguration reschedules the queue's tasks under their row locks, so once this
        // row is held, a policy newer than the one known is already in the stream: use it, or
        // this would schedule the next look by the old policy after the reschedule.
        let current = match self.store.stream_version_in(&mut *tx, queue_id).await? {
            v if v == known.0 => known,
            _ => {
                let (v, queue) = self.load_in::<Queue>(&mut tx, queue_id).await?;
                (v, escalation_policy(&queue))
            }
        };
        let policy = current.1;
        let events = task.decide(&TaskCommand::Escalate { policy }, now)?;
        let task = events.iter().fold(task, |t, e| t.evolve(e));
        let written = events.len() as u64;
        let version = if events.is_empty() {
            version
        } else {
            self.append_in::<Task>(&mut tx, task_id, version, &events, metadata)
                .await?
                .0
        };
        // Also with nothing new (a second server got here first), the next look is moved on.
        put_task_row(
            &mut tx,
            task_id,
            &task,
            version,
            Some(next_escalation(&task, &policy)),
        )
        .await?;
        tx.commit().await?;
        Ok((written, current))
    }
}
