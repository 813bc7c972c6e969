//! The work-queue read model's tables: their DDL (unqualified names, run with `search_path` set
//! to the target schema), the event types the model wants and the tables it owns.

pub(super) const CREATE_SQL: &str = r#"
CREATE TABLE IF NOT EXISTS departments (
    department_id uuid PRIMARY KEY,
    code          text NOT NULL,
    name          text NOT NULL,
    parent_id     uuid,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL,
    version       bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS departments_by_parent ON departments (parent_id);
COMMENT ON TABLE departments IS 'One row per department; parent_id makes the hierarchy (no cycles: a parent exists before its children).';
COMMENT ON COLUMN departments.department_id IS 'The department stream id (UUID v5 of the code).';
COMMENT ON COLUMN departments.code IS 'Unique code, upper case (CRED-EAST).';
COMMENT ON COLUMN departments.name IS 'Current name.';
COMMENT ON COLUMN departments.parent_id IS 'The parent department; NULL for a top-level department.';
COMMENT ON COLUMN departments.created_at IS 'When the department was created.';
COMMENT ON COLUMN departments.updated_at IS 'When its latest event happened.';
COMMENT ON COLUMN departments.version IS 'Version of the department stream this row reflects.';

CREATE TABLE IF NOT EXISTS queues (
    queue_id                      uuid PRIMARY KEY,
    name                          text NOT NULL,
    department_id                 uuid NOT NULL,
    per_user_capacity             integer NOT NULL,
    total_capacity                integer,
    distribution                  text NOT NULL,
    sla_minutes                   jsonb NOT NULL,
    escalation_raise_priority_by  integer NOT NULL,
    escalation_repeat_minutes     integer NOT NULL,
    escalation_max_level          integer NOT NULL,
    groups                        text[] NOT NULL,
    created_at                    timestamptz NOT NULL,
    updated_at                    timestamptz NOT NULL,
    version                       bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS queues_by_department ON queues (department_id);
COMMENT ON TABLE queues IS 'One row per work queue: its configuration (capacity, SLA, escalation, distribution, candidate groups).';
COMMENT ON COLUMN queues.queue_id IS 'The queue stream id (UUID v5 of the normalised name).';
COMMENT ON COLUMN queues.name IS 'Queue name (unique, case and spacing aside).';
COMMENT ON COLUMN queues.department_id IS 'The department the queue belongs to (departments.department_id).';
COMMENT ON COLUMN queues.per_user_capacity IS 'The most tasks one user may hold claimed in this queue at once.';
COMMENT ON COLUMN queues.total_capacity IS 'The most unfinished (open or claimed) tasks the queue holds; NULL for no limit.';
COMMENT ON COLUMN queues.distribution IS 'pull (people claim), or a push strategy: round_robin, least_loaded, skill_based, priority_weighted.';
COMMENT ON COLUMN queues.sla_minutes IS 'Minutes from creation to due time per priority: {"1": 1440, ..., "5": 90} (5 most urgent).';
COMMENT ON COLUMN queues.escalation_raise_priority_by IS 'Escalation policy: priority steps added at each escalation level (never past 5).';
COMMENT ON COLUMN queues.escalation_repeat_minutes IS 'Escalation policy: minutes between levels once a task is overdue (level 1 at its due time).';
COMMENT ON COLUMN queues.escalation_max_level IS 'Escalation policy: the highest escalation level.';
COMMENT ON COLUMN queues.groups IS 'Candidate groups (skills) tasks of this queue may name, sorted.';
COMMENT ON COLUMN queues.created_at IS 'When the queue was created.';
COMMENT ON COLUMN queues.updated_at IS 'When its configuration last changed.';
COMMENT ON COLUMN queues.version IS 'Version of the queue stream this row reflects (grants count too).';

CREATE TABLE IF NOT EXISTS queue_grants (
    grant_id    uuid PRIMARY KEY,
    queue_id    uuid NOT NULL,
    username    text NOT NULL,
    role        text NOT NULL,
    skills      text[] NOT NULL,
    valid_from  timestamptz NOT NULL,
    valid_until timestamptz,
    granted_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_grants_by_queue ON queue_grants (queue_id, username);
CREATE INDEX IF NOT EXISTS queue_grants_by_user ON queue_grants (username);
COMMENT ON TABLE queue_grants IS 'Grants not revoked: who may work in which queue, in which role, with which skills, in which window. Expired grants stay (compare the window with the time you ask about); revoked ones are removed.';
COMMENT ON COLUMN queue_grants.grant_id IS 'The grant id.';
COMMENT ON COLUMN queue_grants.queue_id IS 'The queue (queues.queue_id).';
COMMENT ON COLUMN queue_grants.username IS 'The user granted.';
COMMENT ON COLUMN queue_grants.role IS 'member (claims and completes) or lead (also delegates and reassigns).';
COMMENT ON COLUMN queue_grants.skills IS 'Candidate groups the user works in this queue, sorted.';
COMMENT ON COLUMN queue_grants.valid_from IS 'Start of the window (inclusive).';
COMMENT ON COLUMN queue_grants.valid_until IS 'End of the window (exclusive); NULL until revoked.';
COMMENT ON COLUMN queue_grants.granted_at IS 'When the grant was given.';

CREATE TABLE IF NOT EXISTS tasks (
    task_id          uuid PRIMARY KEY,
    queue_id         uuid NOT NULL,
    title            text NOT NULL,
    priority         smallint NOT NULL,
    initial_priority smallint NOT NULL,
    groups           text[] NOT NULL,
    case_id          uuid,
    status           text NOT NULL,
    claimant         text,
    escalation_level integer NOT NULL,
    payload          jsonb NOT NULL,
    created_at       timestamptz NOT NULL,
    due_at           timestamptz NOT NULL,
    first_claimed_at timestamptz,
    claimed_at       timestamptz,
    completed_at     timestamptz,
    cancelled_at     timestamptz,
    outcome          text,
    within_sla       boolean,
    updated_at       timestamptz NOT NULL,
    version          bigint NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_claim_order ON tasks (queue_id, priority DESC, created_at, task_id) WHERE status = 'open';
CREATE INDEX IF NOT EXISTS tasks_by_queue_status ON tasks (queue_id, status);
CREATE INDEX IF NOT EXISTS tasks_by_claimant ON tasks (claimant, status) WHERE claimant IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_completion ON tasks (queue_id, completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS tasks_by_case ON tasks (case_id) WHERE case_id IS NOT NULL;
-- GET /tasks: newest first, page by page.
CREATE INDEX IF NOT EXISTS tasks_by_creation ON tasks (created_at DESC, task_id);
COMMENT ON TABLE tasks IS 'One row per task: where it is, who holds it, its SLA times and outcome.';
COMMENT ON COLUMN tasks.task_id IS 'The task stream id.';
COMMENT ON COLUMN tasks.queue_id IS 'The queue the task is in (queues.queue_id).';
COMMENT ON COLUMN tasks.title IS 'What is to be done.';
COMMENT ON COLUMN tasks.priority IS 'Current priority, 1 (lowest) to 5 (most urgent); escalation raises it.';
COMMENT ON COLUMN tasks.initial_priority IS 'Priority the task was created with.';
COMMENT ON COLUMN tasks.groups IS 'Candidate groups: who may hold it needs one of them among their skills (empty: anyone in the queue).';
COMMENT ON COLUMN tasks.case_id IS 'The case the task belongs to, if any (cases.case_id).';
COMMENT ON COLUMN tasks.status IS 'open, claimed, completed or cancelled.';
COMMENT ON COLUMN tasks.claimant IS 'Username holding the task while claimed; for finished tasks, who held it last.';
COMMENT ON COLUMN tasks.escalation_level IS '0 until overdue; 1, 2, ... as the escalation policy steps up.';
COMMENT ON COLUMN tasks.payload IS 'The JSON object the task was created with.';
COMMENT ON COLUMN tasks.created_at IS 'When the task was created.';
COMMENT ON COLUMN tasks.due_at IS 'When it is due: creation plus the queue''s SLA for its initial priority.';
COMMENT ON COLUMN tasks.first_claimed_at IS 'When someone first held it (the first claim, push assignment or reassignment).';
COMMENT ON COLUMN tasks.claimed_at IS 'When the current (or last) holder got it; NULL while open.';
COMMENT ON COLUMN tasks.completed_at IS 'When it was completed.';
COMMENT ON COLUMN tasks.cancelled_at IS 'When it was cancelled.';
COMMENT ON COLUMN tasks.outcome IS 'The outcome label given on completion.';
COMMENT ON COLUMN tasks.within_sla IS 'On completion: completed by its due time. NULL until completed.';
COMMENT ON COLUMN tasks.updated_at IS 'When its latest event happened.';
COMMENT ON COLUMN tasks.version IS 'Version of the task stream this row reflects.';

CREATE TABLE IF NOT EXISTS task_history (
    task_id  uuid NOT NULL,
    version  bigint NOT NULL,
    at       timestamptz NOT NULL,
    kind     text NOT NULL,
    actor    text NOT NULL,
    username text,
    detail   text NOT NULL,
    data     jsonb NOT NULL,
    PRIMARY KEY (task_id, version)
);
COMMENT ON TABLE task_history IS 'One row per task event, for the task''s detail page.';
COMMENT ON COLUMN task_history.task_id IS 'The task (tasks.task_id).';
COMMENT ON COLUMN task_history.version IS 'The event''s version in the task stream (1 = created).';
COMMENT ON COLUMN task_history.at IS 'When it happened.';
COMMENT ON COLUMN task_history.kind IS 'created, claimed, assigned, unclaimed, reassigned, completed, cancelled, escalated or linked_to_case.';
COMMENT ON COLUMN task_history.actor IS 'Who issued the command (user:NAME, job:NAME).';
COMMENT ON COLUMN task_history.username IS 'The user it concerns: who claimed, released, completed or cancelled it, or who it was assigned or reassigned to.';
COMMENT ON COLUMN task_history.detail IS 'One sentence describing the event.';
COMMENT ON COLUMN task_history.data IS 'The event''s payload as stored.';

CREATE TABLE IF NOT EXISTS cases (
    case_id     uuid PRIMARY KEY,
    number      text NOT NULL,
    subject     text NOT NULL,
    allegations text[] NOT NULL,
    status      text NOT NULL,
    queue_id    uuid,
    assignee    text,
    opened_at   timestamptz NOT NULL,
    closed_at   timestamptz,
    resolution  text,
    task_count  integer NOT NULL,
    updated_at  timestamptz NOT NULL,
    version     bigint NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS cases_by_number ON cases (number);
-- GET /cases: most recently opened first, page by page.
CREATE INDEX IF NOT EXISTS cases_by_opening ON cases (opened_at DESC, case_id);
COMMENT ON TABLE cases IS 'One row per case: subject, where it is, who has it, how many tasks it links.';
COMMENT ON COLUMN cases.case_id IS 'The case stream id (UUID v5 of the case number).';
COMMENT ON COLUMN cases.number IS 'Case number, upper case (CASE-2026-0042).';
COMMENT ON COLUMN cases.subject IS 'What the case is about.';
COMMENT ON COLUMN cases.allegations IS 'The allegations, in the order given.';
COMMENT ON COLUMN cases.status IS 'open or closed.';
COMMENT ON COLUMN cases.queue_id IS 'The queue the case is routed to now; NULL if never routed.';
COMMENT ON COLUMN cases.assignee IS 'The user the case is assigned to now; NULL if never assigned.';
COMMENT ON COLUMN cases.opened_at IS 'When the case was opened.';
COMMENT ON COLUMN cases.closed_at IS 'When it was closed.';
COMMENT ON COLUMN cases.resolution IS 'How it was closed.';
COMMENT ON COLUMN cases.task_count IS 'Tasks linked to the case.';
COMMENT ON COLUMN cases.updated_at IS 'When its latest event happened.';
COMMENT ON COLUMN cases.version IS 'Version of the case stream this row reflects.';

CREATE TABLE IF NOT EXISTS case_routing (
    case_id       uuid NOT NULL,
    entry_no      integer NOT NULL,
    at            timestamptz NOT NULL,
    kind          text NOT NULL,
    queue_id      uuid,
    from_queue_id uuid,
    from_user     text,
    to_user       text,
    reason        text,
    task_id       uuid,
    actor         text NOT NULL,
    PRIMARY KEY (case_id, entry_no)
);
COMMENT ON TABLE case_routing IS 'A case''s routing history, in order: its routings to queues and assignments to people, and the claims, assignments, reassignments and completions of its tasks.';
COMMENT ON COLUMN case_routing.case_id IS 'The case (cases.case_id).';
COMMENT ON COLUMN case_routing.entry_no IS '1, 2, ... per case, in log order.';
COMMENT ON COLUMN case_routing.at IS 'When it happened.';
COMMENT ON COLUMN case_routing.kind IS 'routed, assigned (the case), task_claimed, task_assigned, task_reassigned or task_completed.';
COMMENT ON COLUMN case_routing.queue_id IS 'routed: the queue the case went to; assigned: the case''s queue then; task_*: the task''s queue.';
COMMENT ON COLUMN case_routing.from_queue_id IS 'routed: the queue the case came from (NULL for its first routing).';
COMMENT ON COLUMN case_routing.from_user IS 'assigned: the previous assignee; task_reassigned: the previous claimant; task_completed: who completed it.';
COMMENT ON COLUMN case_routing.to_user IS 'assigned: the new assignee; task_claimed: who claimed; task_assigned / task_reassigned: who got the task.';
COMMENT ON COLUMN case_routing.reason IS 'routed / assigned / task_reassigned: the reason given; task_assigned: why distribution chose the user; task_claimed: ''claim next'' when chosen by claim-next; task_completed: the outcome.';
COMMENT ON COLUMN case_routing.task_id IS 'task_*: the task (tasks.task_id).';
COMMENT ON COLUMN case_routing.actor IS 'Who issued the command (user:NAME, job:NAME).';
"#;

pub(super) const EVENT_TYPES: &[&str] = &[
    "DepartmentCreated",
    "DepartmentRenamed",
    "QueueCreated",
    "QueueConfigured",
    "QueueAccessGranted",
    "QueueAccessRevoked",
    "TaskCreated",
    "TaskClaimed",
    "TaskAssigned",
    "TaskUnclaimed",
    "TaskReassigned",
    "TaskCompleted",
    "TaskCancelled",
    "TaskEscalated",
    "TaskLinkedToCase",
    "CaseOpened",
    "CaseRouted",
    "CaseAssigned",
    "CaseTaskLinked",
    "CaseClosed",
];

pub(super) const TABLES: &[&str] = &[
    "departments",
    "queues",
    "queue_grants",
    "tasks",
    "task_history",
    "cases",
    "case_routing",
];
