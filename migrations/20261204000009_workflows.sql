-- Workflows: the write side's tables for the workflow executor.
--
-- Not read models: run commands decide from the run's events and write these rows in the same
-- transaction as the events they follow from, so they are exactly as current as the log. They
-- exist so that several server processes can share the execution of runs with row locks: "which
-- step of which run may start now, skipping runs another executor is deciding on right now"
-- (FOR UPDATE SKIP LOCKED), and "which waiting step does this finished task wake". Every row can
-- be recomputed from the events (WorkflowRun::runnable); the events stay the truth.

-- One row per run. Every command on a run locks its row first, so commands on one run take
-- turns instead of racing on the stream's version, and a claim skips a run that is busy.
CREATE TABLE wf_runs (
    run_id  uuid PRIMARY KEY,
    -- running, completed, failed or cancelled.
    status  text NOT NULL,
    -- The run stream's version after the command that last wrote the row.
    version bigint NOT NULL
);

-- What the executor may claim: one row per step that is ready, running (its lease), waiting on
-- a timer, a task or a deadline, or needing an incident task; and one per task to withdraw.
CREATE TABLE wf_runnable (
    run_id  uuid NOT NULL REFERENCES wf_runs (run_id),
    -- The step id, or 'withdraw:<task id>'.
    slot    text NOT NULL,
    -- Claimable from then on. NULL: only when a task finishing sets it (to 'epoch').
    due_at  timestamptz,
    -- An attempt holds the step: counts against the per-run parallelism, and its due_at is
    -- the end of the lease, after which the attempt counts as interrupted.
    running boolean NOT NULL,
    -- The work-queue task the step waits for; completing or cancelling it makes the row due in
    -- the task command's own transaction.
    task_id uuid,
    PRIMARY KEY (run_id, slot)
);
CREATE INDEX wf_runnable_due ON wf_runnable (due_at) WHERE due_at IS NOT NULL;
CREATE INDEX wf_runnable_by_task ON wf_runnable (task_id) WHERE task_id IS NOT NULL;

COMMENT ON TABLE wf_runs IS 'Write-side: one row per workflow run, locked by every command on the run.';
COMMENT ON TABLE wf_runnable IS 'Write-side: the workflow executor''s claimable work, derived from each run''s events.';
