//! Cases: opening, routing, assignment and closing, under the case's lock.

use super::*;

impl WorkQueues {
    pub async fn open_case(
        &self,
        number: &str,
        subject: &str,
        allegations: Vec<String>,
        queue_id: Option<Uuid>,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let number = domain::workqueue::case::parse_number(number).map_err(CaseError::from)?;
        let queue = match queue_id {
            Some(id) => Some(QueueRef {
                queue_id: id,
                exists: self.exists(&self.queues, id).await?,
            }),
            None => None,
        };
        let command = CaseCommand::Open {
            number: number.clone(),
            subject: subject.to_owned(),
            allegations,
            queue,
        };
        self.case_command(Case::stream_id(&number), command, metadata)
            .await
    }

    pub async fn route_case(
        &self,
        case_id: Uuid,
        queue_id: Uuid,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let to = QueueRef {
            queue_id,
            exists: self.exists(&self.queues, queue_id).await?,
        };
        let command = CaseCommand::Route {
            to,
            reason: reason.to_owned(),
        };
        self.case_command(case_id, command, metadata).await
    }

    /// Assigns a case to a person; `to_exists` is the caller's look-up of the account.
    pub async fn assign_case(
        &self,
        case_id: Uuid,
        to: &str,
        to_exists: bool,
        reason: &str,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let command = CaseCommand::Assign {
            to: to.to_owned(),
            to_exists,
            reason: reason.to_owned(),
        };
        self.case_command(case_id, command, metadata).await
    }

    pub async fn close_case(
        &self,
        case_id: Uuid,
        resolution: &str,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        // Counted under the case's lock (in case_command), which task creation and linking
        // for the case take too.
        let command = CaseCommand::Close {
            resolution: resolution.to_owned(),
            unfinished_tasks: 0,
        };
        self.case_command(case_id, command, metadata).await
    }

    /// One case command under the case's lock, which every command writing the case stream
    /// takes (task creation and linking too): they queue instead of failing on each other's
    /// versions, and a close counts the unfinished tasks no link can add to meanwhile.
    pub(super) async fn case_command(
        &self,
        case_id: Uuid,
        command: CaseCommand,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<CaseEvent>, WorkQueueError> {
        let mut tx = self.store.pool().begin().await?;
        lock_key(&mut tx, "case", &case_id.to_string()).await?;
        let command = match command {
            CaseCommand::Close { resolution, .. } => CaseCommand::Close {
                resolution,
                unfinished_tasks: count(
                    sqlx::query_scalar(
                        "SELECT count(*) FROM wq_tasks WHERE case_id = $1 AND status IN ('open', 'claimed')",
                    )
                    .bind(case_id)
                    .fetch_one(&mut *tx)
                    .await?,
                ),
            },
            other => other,
        };
        let (version, case) = self.load_in::<Case>(&mut tx, case_id).await?;
        if version > 0 && !case.exists() {
            return Err(CaseError::NotFound.into());
        }
        let events = case.decide(&command, self.clock.now())?;
        let (version, cursor) = self
            .append_in::<Case>(&mut tx, case_id, version, &events, metadata)
            .await?;
        tx.commit().await?;
        Ok(CommandOutcome {
            stream_id: case_id,
            events,
            version,
            cursor,
            replayed: false,
        })
    }
}
