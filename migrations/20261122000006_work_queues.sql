-- Work queues: the write side's look-up tables for queues, grants and tasks.
--
-- These are not read models. Commands on queues and tasks decide from them, and write them in
-- the same transaction as the events they mirror, so they are exactly as current as the log
-- (a read model lags it). They exist so that the questions a claim must answer under
-- concurrency can be answered with row locks: "which open task comes next, skipping the ones
-- other claimers hold right now" (FOR UPDATE SKIP LOCKED over wq_tasks), "which grants does
-- this user hold in force now" and "how many tasks does this user hold in this queue". Every
-- row can be recomputed from the events; the events stay the truth.

-- One row per queue: what claims and task creation need from its configuration.
CREATE TABLE wq_queues (
    queue_id          uuid PRIMARY KEY,
    -- The most tasks one user may hold claimed in this queue.
    per_user_capacity integer NOT NULL CHECK (per_user_capacity > 0),
    -- The most unfinished tasks the queue holds; NULL for no limit.
    total_capacity    integer CHECK (total_capacity > 0),
    -- pull, round_robin, least_loaded, skill_based or priority_weighted.
    distribution      text NOT NULL,
    -- Round robin's place: the user the queue last pushed a task to.
    last_assigned     text
);

-- One row per grant not revoked (expired grants stay; queries compare their window with now).
CREATE TABLE wq_grants (
    grant_id    uuid PRIMARY KEY,
    queue_id    uuid NOT NULL REFERENCES wq_queues (queue_id),
    username    text NOT NULL,
    -- member or lead.
    role        text NOT NULL,
    -- The candidate groups the user works in this queue.
    skills      text[] NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz
);
CREATE INDEX wq_grants_by_user ON wq_grants (username, queue_id);

-- One row per task.
CREATE TABLE wq_tasks (
    task_id            uuid PRIMARY KEY,
    queue_id           uuid NOT NULL REFERENCES wq_queues (queue_id),
    case_id            uuid,
    -- open, claimed, completed or cancelled.
    status             text NOT NULL,
    priority           smallint NOT NULL,
    created_at         timestamptz NOT NULL,
    due_at             timestamptz NOT NULL,
    claimant           text,
    escalation_level   integer NOT NULL,
    -- When the SLA check has to look at the task again; NULL once it cannot escalate further.
    next_escalation_at timestamptz,
    -- The candidate groups as 'queue_id:group', so one array overlap (&&) against the claimer's
    -- skills, qualified the same way, checks every queue of a claim-next at once.
    group_keys         text[] NOT NULL,
    -- The task stream's version this row reflects.
    version            bigint NOT NULL
);
-- Claim-next's order: highest priority, then oldest, among open tasks of a queue.
CREATE INDEX wq_tasks_claim_order ON wq_tasks (queue_id, priority DESC, created_at, task_id)
    WHERE status = 'open';
-- A user's load per queue.
CREATE INDEX wq_tasks_by_claimant ON wq_tasks (claimant, queue_id) WHERE status = 'claimed';
-- The SLA check's work list.
CREATE INDEX wq_tasks_escalation ON wq_tasks (next_escalation_at) WHERE next_escalation_at IS NOT NULL;
-- A queue's unfinished tasks (its total capacity) and a case's.
CREATE INDEX wq_tasks_unfinished ON wq_tasks (queue_id) WHERE status IN ('open', 'claimed');
CREATE INDEX wq_tasks_by_case ON wq_tasks (case_id) WHERE case_id IS NOT NULL;

-- Claim-next's idempotency keys: a retried request with the same key returns the same task.
CREATE TABLE wq_claim_keys (
    username        text NOT NULL,
    idempotency_key text NOT NULL,
    task_id         uuid NOT NULL,
    -- The task's version after the claim and the claim event's read-order cursor.
    version         bigint NOT NULL,
    transaction_id  bigint NOT NULL,
    position        bigint NOT NULL,
    claimed_at      timestamptz NOT NULL,
    PRIMARY KEY (username, idempotency_key)
);
