//! Queues and their role grants; every command also writes the queue's `wq_queues` and
//! `wq_grants` rows in its append's transaction.

use super::*;

impl WorkQueues {
    /// Creates a queue; its name decides its id.
    pub async fn create_queue(
        &self,
        name: &str,
        config: QueueConfig,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let department_exists = self.exists(&self.departments, config.department_id).await?;
        let command = QueueCommand::Create {
            name: name.to_owned(),
            config,
            department_exists,
        };
        self.queue_command(Queue::stream_id(name), &command, None, metadata)
            .await
    }

    pub async fn configure_queue(
        &self,
        queue_id: Uuid,
        config: QueueConfig,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let department_exists = self.exists(&self.departments, config.department_id).await?;
        let command = QueueCommand::Configure {
            config,
            department_exists,
        };
        self.queue_command(queue_id, &command, None, metadata).await
    }

    /// Grants `username` a role in a queue. `user_exists` is the caller's look-up.
    #[allow(clippy::too_many_arguments)]
    pub async fn grant(
        &self,
        queue_id: Uuid,
        grant_id: Uuid,
        username: Username,
        user_exists: bool,
        role: QueueRole,
        skills: Vec<GroupLabel>,
        valid_from: Option<DateTime<Utc>>,
        valid_until: Option<DateTime<Utc>>,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let user = username.as_str().to_owned();
        let command = QueueCommand::Grant {
            grant_id,
            username,
            user_exists,
            role,
            skills,
            valid_from,
            valid_until,
        };
        self.queue_command(queue_id, &command, Some(&user), metadata)
            .await
    }

    pub async fn revoke(
        &self,
        queue_id: Uuid,
        grant_id: Uuid,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let holder: Option<String> = sqlx::query_scalar(
            "SELECT username FROM wq_grants WHERE grant_id = $1 AND queue_id = $2",
        )
        .bind(grant_id)
        .bind(queue_id)
        .fetch_optional(self.store.pool())
        .await?;
        let command = QueueCommand::Revoke {
            grant_id,
            reason: reason.to_owned(),
        };
        self.queue_command(queue_id, &command, holder.as_deref(), metadata)
            .await
    }

    /// One queue command: queue stream locked, decided, appended, mirrored. A grant or
    /// revocation also holds the user's lock, so that it orders against that user's claims.
    pub(super) async fn queue_command(
        &self,
        queue_id: Uuid,
        command: &QueueCommand,
        user: Option<&str>,
        metadata: &Metadata,
    ) -> Result<QueueWritten, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        lock_key(&mut tx, "queue", &queue_id.to_string()).await?;
        if let Some(user) = user {
            lock_user(&mut tx, user).await?;
        }
        let (version, queue) = self.load_in::<Queue>(&mut tx, queue_id).await?;
        if version > 0 && !queue.exists() {
            return Err(QueueError::NotFound.into());
        }
        let now = self.clock.now();
        let events = queue.decide(command, now)?;
        let (version, cursor) = self
            .append_in::<Queue>(&mut tx, queue_id, version, &events, metadata)
            .await?;
        let policy_before = queue.config.as_ref().map(|c| c.escalation);
        for event in &events {
            mirror_queue_event(&mut tx, queue_id, event).await?;
            if let QueueEvent::QueueConfigured { config, .. } = event {
                if policy_before.is_some_and(|p| p != config.escalation) {
                    // Each unfinished task's next escalation was scheduled under the old
                    // policy. Before its due time nothing changes; after it, the SLA check
                    // looks at the task on its next run and, deciding under the new policy,
                    // escalates it or schedules the next look. Rows that keep their value are
                    // left alone (and unlocked, so claimers do not skip them meanwhile).
                    sqlx::query(
                        "UPDATE wq_tasks SET next_escalation_at = greatest(due_at, $2) \
                         WHERE queue_id = $1 AND status IN ('open', 'claimed') \
                           AND next_escalation_at IS DISTINCT FROM greatest(due_at, $2)",
                    )
                    .bind(queue_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(CommandOutcome {
            stream_id: queue_id,
            events,
            version,
            cursor,
            replayed: false,
        })
    }
}
