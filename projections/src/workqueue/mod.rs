//! The work-queue read model: departments, queues and their grants, tasks with their history,
//! cases with their routing history, and the queries behind the work screens (queue list and
//! view, my tasks, the dashboard, the SLA report, case detail and routing, the department tree).
//!
//! Every time in these tables is the `at` the domain recorded in the event (the command's
//! clock), not the database's `recorded_at`, so SLA figures are measured on the times the
//! decisions were made with.
//!
//! The command side keeps its own `wq_*` tables in the `public` schema for claims under
//! concurrency; they are not read models and nothing here reads them.
//!
//! `case_routing` is the history of where a case went: its own routings and assignments, and
//! the claims, assignments, reassignments and completions of the tasks linked to it (from the
//! moment they are linked), one row each, numbered in log order per case.
//!
//! The module by concern:
//! - `schema`: the tables' DDL, the event types wanted and the tables owned;
//! - `apply`: how each department, queue, task and case event changes the rows;
//! - `queries`: the read functions and the row types they return.

mod apply;
mod queries;
mod schema;

use domain::workqueue::case::Case;
use domain::workqueue::department::Department;
use domain::workqueue::queue::Queue;
use domain::workqueue::task::Task;
use domain::Aggregate;
use eventstore::RecordedEvent;
use futures_util::future::BoxFuture;
use sqlx::PgConnection;

use crate::projection::{decode, ApplyError, Projection};
use schema::{CREATE_SQL, EVENT_TYPES, TABLES};

pub use queries::*;

#[derive(Debug, Clone, Copy, Default)]
pub struct WorkQueueModel;

/// The projection's name: its checkpoint, and what `min_cursor` waits for.
pub const NAME: &str = "workqueues";

impl Projection for WorkQueueModel {
    fn name(&self) -> &'static str {
        NAME
    }

    fn event_types(&self) -> &'static [&'static str] {
        EVENT_TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        TABLES
    }

    fn create_sql(&self) -> &'static str {
        CREATE_SQL
    }

    fn apply<'a>(
        &'a self,
        conn: &'a mut PgConnection,
        events: &'a [RecordedEvent],
    ) -> BoxFuture<'a, Result<(), ApplyError>> {
        Box::pin(async move {
            for e in events {
                match e.stream_type.as_str() {
                    Department::STREAM_TYPE => {
                        apply::apply_department(conn, e, &decode::<Department>(e)?).await?
                    }
                    Queue::STREAM_TYPE => apply::apply_queue(conn, e, &decode::<Queue>(e)?).await?,
                    Task::STREAM_TYPE => apply::apply_task(conn, e, &decode::<Task>(e)?).await?,
                    Case::STREAM_TYPE => apply::apply_case(conn, e, &decode::<Case>(e)?).await?,
                    _ => {}
                }
            }
            Ok(())
        })
    }
}
