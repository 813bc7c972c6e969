//! Departments: the one work-queue aggregate with no look-ups on the `wq_*` tables, so
//! its commands take the [`CommandHandler`] path.

use super::*;

impl WorkQueues {
    pub async fn create_department(
        &self,
        code: &str,
        name: &str,
        parent_id: Option<Uuid>,
        metadata: &Metadata,
    ) -> Result<CommandOutcome<DepartmentEvent>, WorkQueueError> {
        let code =
            domain::workqueue::department::parse_code(code).map_err(DepartmentError::from)?;
        let parent = match parent_id {
            Some(id) => Some(ParentLookup {
                id,
                exists: self.exists(&self.departments, id).await?,
            }),
            None => None,
        };
        let command = DepartmentCommand::Create {
            code: code.clone(),
            name: name.to_owned(),
            parent,
        };
        Ok(self
            .departments
            .handle(Department::stream_id(&code), &command, metadata)
            .await?)
    }
}
