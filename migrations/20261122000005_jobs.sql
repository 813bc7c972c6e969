-- Scheduled jobs (the renewal scan, the expiry job, ...). Operational state, not history: the
-- changes a job makes are events like any other. The schedule lives here rather than in each
-- process, so that however many servers run, a job has one schedule, one pause switch and
-- one record of runs.
CREATE TABLE jobs (
    name             text PRIMARY KEY,
    -- From configuration at server start; the last server to start wins.
    interval_seconds bigint NOT NULL CHECK (interval_seconds > 0),
    -- Paused jobs are skipped by the scheduler; "run now" still works.
    paused           boolean NOT NULL DEFAULT false,
    -- When the scheduler next runs it (job clock). A run claims its slot by moving this forward.
    next_run_at      timestamptz NOT NULL
);

CREATE TABLE job_runs (
    run_id       uuid PRIMARY KEY,
    job          text NOT NULL REFERENCES jobs (name),
    -- 'schedule' or 'manual' (an operator's "run now").
    trigger      text NOT NULL CHECK (trigger IN ('schedule', 'manual')),
    requested_by text NOT NULL,
    -- Job clock, so that runs in tests with a moved clock read sensibly.
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    -- 'abandoned': the process running it died; noticed by the next run of the job.
    status       text NOT NULL CHECK (status IN ('running', 'succeeded', 'failed', 'abandoned')),
    -- What the job reports (e.g. opened / skipped / failed counts).
    result       jsonb,
    error        text
);

CREATE INDEX job_runs_by_job ON job_runs (job, started_at DESC);

COMMENT ON TABLE jobs IS 'Scheduled jobs: interval, pause switch and next run time.';
COMMENT ON TABLE job_runs IS 'One row per job run: trigger, start, finish, outcome and result.';
