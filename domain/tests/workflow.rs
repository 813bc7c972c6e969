//! Workflows as specifications: what registration refuses (and where it points), the `when`
//! language, and runs: given past events, when a command is decided, then these events (or this
//! refusal). See `domain::workflow`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::refusal::{ErrorKind, Refusal};
use domain::testing::{Given, Spec};
use domain::workflow::definition::{DefinitionCommand, DefinitionEvent, Located};
use domain::workflow::run::{Runnable, SkipReason};
use domain::workflow::{
    Condition, Definition, DefinitionError, RetryPolicy, RunCommand, RunError, RunEvent, RunStatus,
    StepDef, StepStatus, WaitOn, WorkflowDefinition, WorkflowRun,
};
use serde_json::{json, Value};
use uuid::Uuid;

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const RUN: Uuid = Uuid::from_u128(0x52);
const TASK: Uuid = Uuid::from_u128(0x7A5C);
const INCIDENT: Uuid = Uuid::from_u128(0x1C1D);

const KEY: &str = "onboarding";
const INTERRUPTED: &str =
    "the attempt was interrupted: its executor stopped before reporting a result";

/// When the run started (and the definitions were registered).
fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 15, 12, 0, 0)
        .single()
        .expect("a valid time")
}

/// `seconds` after the start.
fn at(seconds: i64) -> DateTime<Utc> {
    t0() + Duration::seconds(seconds)
}

/// How long an executor holds an attempt in these specs.
fn lease(from: DateTime<Utc>) -> DateTime<Utc> {
    from + Duration::seconds(60)
}

fn step(value: Value) -> StepDef {
    serde_json::from_value(value).expect("a step definition")
}

fn definition(steps: impl IntoIterator<Item = Value>) -> Definition {
    Definition {
        key: KEY.into(),
        name: "Onboarding".into(),
        description: String::new(),
        input_schema: None,
        steps: steps.into_iter().map(step).collect(),
    }
}

/// `a`, then `b` and `c` side by side, then `d` once both are done.
fn diamond() -> Definition {
    definition([
        json!({"id": "a", "kind": "http"}),
        json!({"id": "b", "kind": "http", "depends_on": ["a"]}),
        json!({"id": "c", "kind": "human_task", "depends_on": ["a"]}),
        json!({"id": "d", "kind": "http", "depends_on": ["b", "c"]}),
    ])
}

/// One HTTP step tried up to three times, 10 s before the first retry.
fn retried() -> Definition {
    definition([json!({
        "id": "notify",
        "kind": "http",
        "retry": {"max_attempts": 3, "initial_backoff_ms": 10_000},
    })])
}

fn condition(value: Value) -> Condition {
    serde_json::from_value(value).expect("a condition")
}

// Definitions' commands and events.

fn register(definition: &Definition) -> DefinitionCommand {
    DefinitionCommand::Register {
        definition: definition.clone(),
        by: "admin".into(),
    }
}

fn registered(version: u32, definition: &Definition, at: DateTime<Utc>) -> DefinitionEvent {
    DefinitionEvent::WorkflowVersionRegistered {
        version,
        definition: definition.clone(),
        by: "admin".into(),
        at,
    }
}

/// The refusal of registering `definition`, which must be `error` pointing at `pointer`.
#[track_caller]
fn refused(definition: &Definition, error: DefinitionError, pointer: &str) -> Located {
    WorkflowDefinition::given([])
        .when(register(definition), t0())
        .then_err(Located {
            error,
            pointer: Some(pointer.to_owned()),
        })
}

fn details(refusal: &impl Refusal) -> Value {
    Value::Object(refusal.details())
}

// Runs' commands and events.

fn input() -> Value {
    json!({"state": "CA"})
}

fn start(definition: &Definition) -> RunCommand {
    RunCommand::Start {
        run_id: RUN,
        version: 1,
        definition: definition.clone(),
        input: input(),
        business_key: Some("case-1".into()),
        by: "alice".into(),
    }
}

fn started(definition: &Definition) -> RunEvent {
    RunEvent::RunStarted {
        run_id: RUN,
        key: KEY.into(),
        version: 1,
        name: "Onboarding".into(),
        steps: definition.steps.clone(),
        input: input(),
        business_key: Some("case-1".into()),
        by: "alice".into(),
        at: t0(),
    }
}

fn begin(step: &str, lease_until: DateTime<Utc>) -> RunCommand {
    RunCommand::BeginAttempt {
        step: step.into(),
        lease_until,
    }
}

fn succeed(step: &str, attempt: u32, output: Value) -> RunCommand {
    RunCommand::Succeed {
        step: step.into(),
        attempt,
        output,
    }
}

/// A failed attempt reported with no jitter: the retry waits exactly half its backoff.
fn fail(step: &str, attempt: u32, error: &str) -> RunCommand {
    RunCommand::Fail {
        step: step.into(),
        attempt,
        error: error.into(),
        jitter: 0.0,
    }
}

fn wait(step: &str, attempt: u32, on: WaitOn) -> RunCommand {
    RunCommand::Wait {
        step: step.into(),
        attempt,
        on,
        deadline: None,
    }
}

fn ready(step: &str, attempt: u32, not_before: DateTime<Utc>, at: DateTime<Utc>) -> RunEvent {
    RunEvent::StepReady {
        step: step.into(),
        attempt,
        not_before,
        at,
    }
}

fn attempt_started(
    step: &str,
    attempt: u32,
    lease_until: DateTime<Utc>,
    at: DateTime<Utc>,
) -> RunEvent {
    RunEvent::AttemptStarted {
        step: step.into(),
        attempt,
        idempotency_key: format!("{RUN}:{step}:{attempt}"),
        lease_until,
        at,
    }
}

fn succeeded(step: &str, attempt: u32, output: Value, at: DateTime<Utc>) -> RunEvent {
    RunEvent::AttemptSucceeded {
        step: step.into(),
        attempt,
        output,
        at,
    }
}

fn failed(step: &str, attempt: u32, error: &str, at: DateTime<Utc>) -> RunEvent {
    RunEvent::AttemptFailed {
        step: step.into(),
        attempt,
        error: error.into(),
        interrupted: false,
        at,
    }
}

/// The run of `definition` started at [`t0`], then each command accepted in turn.
#[track_caller]
fn story(
    definition: &Definition,
    commands: impl IntoIterator<Item = (RunCommand, DateTime<Utc>)>,
) -> Given<WorkflowRun> {
    let mut then = WorkflowRun::given([])
        .when(start(definition), t0())
        .then_ok();
    for (command, now) in commands {
        then = then.and_when(command, now).then_ok();
    }
    then.into_given()
}

fn status<'a>(run: &'a WorkflowRun, step: &str) -> &'a StepStatus {
    &run.step_states[step].status
}

// ---------------------------------------------------------------------------------------------
// Registration: what a definition may not be, and where the refusal points
// ---------------------------------------------------------------------------------------------

#[test]
fn a_well_formed_diamond_passes_the_checks() {
    assert_eq!(diamond().check(), Ok(()));
}

#[test]
fn a_step_id_used_twice_is_refused_pointing_at_its_second_use() {
    let twice = definition([
        json!({"id": "a", "kind": "http"}),
        json!({"id": "b", "kind": "http"}),
        json!({"id": "a", "kind": "human_task"}),
    ]);
    let refusal = refused(
        &twice,
        DefinitionError::DuplicateStep("a".into()),
        "/steps/2/id",
    );
    assert_eq!(refusal.code(), "duplicate_step");
    assert_eq!(refusal.kind(), ErrorKind::Invalid);
    assert_eq!(
        details(&refusal),
        json!({"step": "a", "pointer": "/steps/2/id"})
    );
}

#[test]
fn a_dependency_on_a_step_that_does_not_exist_is_refused_pointing_at_the_dependency() {
    let ghost = definition([
        json!({"id": "a", "kind": "http"}),
        json!({"id": "b", "kind": "http", "depends_on": ["a", "ghost"]}),
    ]);
    let refusal = refused(
        &ghost,
        DefinitionError::UnknownDependency {
            step: "b".into(),
            missing: "ghost".into(),
        },
        "/steps/1/depends_on/1",
    );
    assert_eq!(refusal.code(), "unknown_dependency");
    assert_eq!(
        details(&refusal),
        json!({"step": "b", "missing": "ghost", "pointer": "/steps/1/depends_on/1"})
    );
}

#[test]
fn a_cycle_is_refused_naming_its_steps_in_order() {
    let circular = definition([
        json!({"id": "intake", "kind": "http"}),
        json!({"id": "a", "kind": "http", "depends_on": ["intake", "b"]}),
        json!({"id": "b", "kind": "http", "depends_on": ["c"]}),
        json!({"id": "c", "kind": "http", "depends_on": ["a"]}),
    ]);
    let cycle = circular.cycle().expect("a cycle");
    assert_eq!(cycle, ["a", "b", "c"]);
    // Each step depends on the next, and the last on the first.
    for (i, id) in cycle.iter().enumerate() {
        let next = &cycle[(i + 1) % cycle.len()];
        let step = circular.steps.iter().find(|s| s.id == *id).expect("a step");
        assert!(step.depends_on.contains(next), "{id} depends on {next}");
    }

    let refusal = refused(
        &circular,
        DefinitionError::Cycle(cycle),
        "/steps/1/depends_on",
    );
    assert_eq!(refusal.code(), "workflow_cycle");
    assert_eq!(
        refusal.to_string(),
        "the steps depend on each other in a cycle: a -> b -> c"
    );
    assert_eq!(
        details(&refusal),
        json!({"cycle": ["a", "b", "c"], "pointer": "/steps/1/depends_on"})
    );
}

#[test]
fn a_step_depending_on_itself_is_a_cycle_of_one() {
    let selfish = definition([json!({"id": "a", "kind": "http", "depends_on": ["a"]})]);
    assert_eq!(
        selfish.check(),
        Err(DefinitionError::Cycle(vec!["a".into()]))
    );
}

#[test]
fn a_condition_may_only_read_the_outputs_of_steps_it_depends_on() {
    // `c` runs beside `b`, so `b` may not have finished when `c`'s condition is decided.
    let mut sibling = diamond();
    sibling.steps[2].when = Some(condition(
        json!({"pointer": "/steps/b/output/ok", "equals": true}),
    ));
    let refusal = refused(
        &sibling,
        DefinitionError::BadCondition {
            step: "c".into(),
            problem: "it reads the output of \"b\", which is not a step this one depends on (directly or through others)".into(),
        },
        "/steps/2/when",
    );
    assert_eq!(refusal.code(), "invalid_condition");
    assert_eq!(
        details(&refusal),
        json!({"step": "c", "pointer": "/steps/2/when"})
    );

    // Its own output is no better.
    let mut own = diamond();
    own.steps[1].when = Some(condition(
        json!({"pointer": "/steps/b/output", "exists": true}),
    ));
    assert!(matches!(
        own.check(),
        Err(DefinitionError::BadCondition { step, .. }) if step == "b"
    ));

    // `d` depends on `a` through `b` and `c`: an ancestor, so it may read `a`'s output.
    let mut ancestor = diamond();
    ancestor.steps[3].when = Some(condition(json!({"all": [
        {"pointer": "/steps/a/output/score", "greater": 0.5},
        {"pointer": "/input/state", "in": ["CA", "NY"]},
    ]})));
    assert_eq!(ancestor.check(), Ok(()));
}

#[test]
fn a_condition_with_two_operators_none_or_a_pointer_outside_input_and_steps_is_refused() {
    let cases = [
        (
            json!({"pointer": "/input/amount", "greater": 1, "less": 10}),
            "has more than one operator",
        ),
        (json!({"pointer": "/input/amount"}), "needs one of"),
        (
            json!({"pointer": "/run/state", "equals": "CA"}),
            "must start with /input or /steps/<step id>/output",
        ),
        (
            json!({"pointer": "/steps/a/input", "exists": true}),
            "must start with /input or /steps/<step id>/output",
        ),
        (
            json!({"any": [{"pointer": "/input/state", "equals": "CA"}, {"pointer": "state", "equals": "NY"}]}),
            "must start with /input or /steps/<step id>/output",
        ),
        (json!({"all": []}), "at least one condition"),
    ];
    for (when, says) in cases {
        let mut bad = diamond();
        bad.steps[1].when = Some(condition(when.clone()));
        let refusal = WorkflowDefinition::given([])
            .when(register(&bad), t0())
            .then_refused();
        assert_eq!(refusal.code(), "invalid_condition", "{when}");
        assert_eq!(refusal.pointer.as_deref(), Some("/steps/1/when"), "{when}");
        assert!(
            matches!(&refusal.error, DefinitionError::BadCondition { step, problem } if step == "b" && problem.contains(says)),
            "{when}: {refusal}"
        );
    }
}

#[test]
fn an_unknown_operator_is_not_a_condition_at_all() {
    let parsed: Result<Condition, _> =
        serde_json::from_value(json!({"pointer": "/input/state", "matches": "C.*"}));
    assert!(parsed.is_err());
}

#[test]
fn a_fallback_that_has_dependencies_is_refused() {
    let fallback_with_deps = definition([
        json!({"id": "a", "kind": "http"}),
        json!({"id": "verify", "kind": "http", "depends_on": ["a"], "on_failure": {"fallback": "by_hand"}}),
        json!({"id": "by_hand", "kind": "human_task", "depends_on": ["a"]}),
    ]);
    let refusal = refused(
        &fallback_with_deps,
        DefinitionError::BadFallback {
            step: "verify".into(),
            problem: "fallback step \"by_hand\" must have no depends_on and no when: it runs in the failed step's place".into(),
        },
        "/steps/1/on_failure",
    );
    assert_eq!(refusal.code(), "invalid_fallback");
    assert_eq!(
        details(&refusal),
        json!({"step": "verify", "pointer": "/steps/1/on_failure"})
    );
}

#[test]
fn a_fallback_must_be_another_step_that_nothing_depends_on() {
    let cases = [
        (
            definition([json!({"id": "a", "kind": "http", "on_failure": {"fallback": "nobody"}})]),
            "is not a step of this workflow",
        ),
        (
            definition([json!({"id": "a", "kind": "http", "on_failure": {"fallback": "a"}})]),
            "its own fallback",
        ),
        (
            definition([
                json!({"id": "a", "kind": "http", "on_failure": {"fallback": "b"}}),
                json!({"id": "b", "kind": "human_task"}),
                json!({"id": "c", "kind": "http", "depends_on": ["b"]}),
            ]),
            "cannot be a dependency",
        ),
    ];
    for (bad, says) in cases {
        assert!(
            matches!(bad.check(), Err(DefinitionError::BadFallback { step, problem }) if step == "a" && problem.contains(says)),
            "{says}: {:?}",
            bad.check()
        );
    }
}

#[test]
fn registering_a_key_again_appends_the_next_version() {
    let first = diamond();
    let mut second = diamond();
    second.name = "Onboarding, second edition".into();

    let then = WorkflowDefinition::given([])
        .when(register(&first), t0())
        .then([registered(1, &first, t0())]);
    assert_eq!(then.state().key.as_deref(), Some(KEY));
    assert!(
        then.state().active,
        "the first version makes the key active"
    );

    let then = then
        .and_when(register(&second), at(60))
        .then([registered(2, &second, at(60))]);
    let workflow = then.state();
    assert_eq!(workflow.versions.len(), 2);
    assert_eq!(workflow.latest().map(|r| r.version), Some(2));
    assert_eq!(workflow.version(None).map(|r| r.version), Some(2));
    assert_eq!(
        workflow.version(Some(1)).map(|r| &r.definition),
        Some(&first)
    );
    assert_eq!(
        workflow.version(Some(2)).map(|r| &r.definition),
        Some(&second)
    );
    assert_eq!(
        workflow.for_new_run(KEY, None).map(|r| r.version),
        Ok(2),
        "a new run starts on the latest version"
    );
    assert_eq!(
        workflow.for_new_run(KEY, Some(1)).map(|r| r.version),
        Ok(1),
        "or on the version asked for"
    );
}

#[test]
fn a_deactivated_workflow_starts_no_runs_until_it_is_activated_again() {
    let deactivate = || DefinitionCommand::Deactivate {
        key: KEY.into(),
        by: "admin".into(),
    };
    let activate = || DefinitionCommand::Activate {
        key: KEY.into(),
        by: "admin".into(),
    };
    let then = WorkflowDefinition::given([registered(1, &diamond(), t0())])
        .when(deactivate(), at(60))
        .then([DefinitionEvent::WorkflowDeactivated {
            by: "admin".into(),
            at: at(60),
        }]);
    assert!(!then.state().active);
    let refusal = then
        .state()
        .for_new_run(KEY, None)
        .expect_err("an inactive key starts no runs");
    assert_eq!(refusal, DefinitionError::Inactive(KEY.into()));
    assert_eq!(refusal.code(), "workflow_inactive");
    assert_eq!(refusal.kind(), ErrorKind::Conflict);

    // Deactivating again changes nothing; a new version keeps the key deactivated.
    let then = then.and_when(deactivate(), at(90)).then([]);
    let then = then
        .and_when(register(&diamond()), at(100))
        .then([registered(2, &diamond(), at(100))]);
    assert!(!then.state().active);

    let then = then
        .and_when(activate(), at(120))
        .then([DefinitionEvent::WorkflowActivated {
            by: "admin".into(),
            at: at(120),
        }]);
    assert!(then.state().active);
    assert_eq!(
        then.state().for_new_run(KEY, None).map(|r| r.version),
        Ok(2)
    );
    then.and_when(activate(), at(130)).then([]);
}

#[test]
fn a_key_nobody_registered_cannot_be_deactivated_activated_or_run() {
    let nothing = WorkflowDefinition::given([]);
    let not_found = || Located {
        error: DefinitionError::NotFound(KEY.into()),
        pointer: None,
    };
    nothing
        .when(
            DefinitionCommand::Deactivate {
                key: KEY.into(),
                by: "admin".into(),
            },
            t0(),
        )
        .then_err(not_found());
    let refusal = nothing
        .when(
            DefinitionCommand::Activate {
                key: KEY.into(),
                by: "admin".into(),
            },
            t0(),
        )
        .then_err(not_found());
    assert_eq!(refusal.code(), "workflow_not_found");
    assert_eq!(refusal.kind(), ErrorKind::NotFound);
    assert_eq!(
        nothing.state().for_new_run(KEY, None),
        Err(DefinitionError::NotFound(KEY.into()))
    );
}

#[test]
fn a_new_run_is_refused_a_version_that_was_never_registered() {
    let workflow = WorkflowDefinition::given([
        registered(1, &diamond(), t0()),
        registered(2, &diamond(), at(60)),
    ])
    .into_state();
    for version in [0, 3] {
        let refusal = workflow
            .for_new_run(KEY, Some(version))
            .expect_err("no such version");
        assert_eq!(
            refusal,
            DefinitionError::VersionNotFound {
                key: KEY.into(),
                version
            }
        );
        assert_eq!(refusal.code(), "workflow_version_not_found");
        assert_eq!(refusal.kind(), ErrorKind::NotFound);
        assert_eq!(details(&refusal), json!({"key": KEY, "version": version}));
    }
}

#[test]
fn the_plan_of_a_diamond_runs_its_middle_steps_together() {
    assert_eq!(diamond().plan(), [vec!["a"], vec!["b", "c"], vec!["d"]]);
}

#[test]
fn the_plan_follows_dependencies_not_the_order_steps_are_listed_in_and_leaves_out_fallbacks() {
    let shuffled = definition([
        json!({"id": "d", "kind": "http", "depends_on": ["b", "c"]}),
        json!({"id": "c", "kind": "human_task", "depends_on": ["a"]}),
        json!({"id": "by_hand", "kind": "human_task"}),
        json!({"id": "b", "kind": "http", "depends_on": ["a"], "on_failure": {"fallback": "by_hand"}}),
        json!({"id": "a", "kind": "http"}),
    ]);
    assert_eq!(shuffled.check(), Ok(()));
    assert_eq!(shuffled.plan(), [vec!["a"], vec!["c", "b"], vec!["d"]]);
}

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

/// A run's context: its input and the outputs of the steps finished so far.
fn context() -> Value {
    json!({
        "input": {"state": "CA", "amount": 120, "label": "120", "note": null},
        "steps": {"verify": {"output": {"score": 0.9, "flags": []}}},
    })
}

#[track_caller]
fn holds(when: Value) -> bool {
    let when = condition(when);
    assert_eq!(when.check(), Ok(()), "a well-formed condition");
    when.holds(&context())
}

#[test]
fn equals_holds_only_for_an_equal_value_and_never_for_a_missing_one() {
    assert!(holds(json!({"pointer": "/input/state", "equals": "CA"})));
    assert!(holds(
        json!({"pointer": "/steps/verify/output/flags", "equals": []})
    ));
    assert!(!holds(json!({"pointer": "/input/state", "equals": "NY"})));
    assert!(!holds(json!({"pointer": "/input/amount", "equals": "120"})));
    assert!(!holds(json!({"pointer": "/input/missing", "equals": "CA"})));
    assert!(!holds(
        json!({"pointer": "/steps/screen/output", "equals": {}})
    ));
}

#[test]
fn not_equals_holds_for_a_different_value_and_for_a_missing_one() {
    assert!(holds(
        json!({"pointer": "/input/state", "not_equals": "NY"})
    ));
    assert!(!holds(
        json!({"pointer": "/input/state", "not_equals": "CA"})
    ));
    assert!(holds(
        json!({"pointer": "/input/missing", "not_equals": "CA"})
    ));
    assert!(holds(json!({"pointer": "/input/note", "not_equals": "CA"})));
}

#[test]
fn in_holds_when_the_value_is_one_of_the_options() {
    assert!(holds(
        json!({"pointer": "/input/state", "in": ["NY", "CA"]})
    ));
    assert!(!holds(
        json!({"pointer": "/input/state", "in": ["NY", "TX"]})
    ));
    assert!(!holds(json!({"pointer": "/input/state", "in": []})));
    assert!(!holds(json!({"pointer": "/input/missing", "in": ["CA"]})));
}

#[test]
fn exists_tells_a_present_value_from_a_missing_one_and_null_counts_as_missing() {
    assert!(holds(json!({"pointer": "/input/state", "exists": true})));
    assert!(!holds(json!({"pointer": "/input/state", "exists": false})));
    assert!(holds(
        json!({"pointer": "/steps/verify/output", "exists": true})
    ));
    assert!(holds(
        json!({"pointer": "/steps/screen/output", "exists": false})
    ));
    assert!(!holds(json!({"pointer": "/input/missing", "exists": true})));
    assert!(holds(json!({"pointer": "/input/missing", "exists": false})));
    assert!(holds(json!({"pointer": "/input/note", "exists": false})));
}

#[test]
fn greater_and_less_compare_numbers_and_are_false_for_anything_else() {
    assert!(holds(
        json!({"pointer": "/steps/verify/output/score", "greater": 0.8})
    ));
    assert!(!holds(
        json!({"pointer": "/steps/verify/output/score", "greater": 0.9})
    ));
    assert!(holds(json!({"pointer": "/input/amount", "less": 120.5})));
    assert!(!holds(json!({"pointer": "/input/amount", "less": 120})));
    // A string that reads as a number is not one; a missing value is neither.
    assert!(!holds(json!({"pointer": "/input/label", "greater": 1})));
    assert!(!holds(json!({"pointer": "/input/label", "less": 1000})));
    assert!(!holds(json!({"pointer": "/input/missing", "greater": -1})));
    assert!(!holds(json!({"pointer": "/input/missing", "less": 1})));
}

#[test]
fn all_needs_every_part_to_hold_and_any_needs_one() {
    let ca = json!({"pointer": "/input/state", "equals": "CA"});
    let trusted = json!({"pointer": "/steps/verify/output/score", "greater": 0.8});
    let large = json!({"pointer": "/input/amount", "greater": 1000});
    let missing = json!({"pointer": "/input/missing", "exists": true});

    assert!(holds(json!({"all": [ca, trusted]})));
    assert!(!holds(json!({"all": [ca, large]})));
    assert!(!holds(json!({"all": [missing]})));
    assert!(holds(json!({"any": [large, missing, trusted]})));
    assert!(!holds(json!({"any": [large, missing]})));
    assert!(holds(json!({"any": [large, {"all": [ca, trusted]}]})));
    assert!(!holds(json!({"all": [ca, {"any": [large, missing]}]})));
}

#[test]
fn a_condition_lists_its_tests_depth_first() {
    let when = condition(json!({"all": [
        {"pointer": "/input/a", "exists": true},
        {"any": [{"pointer": "/input/b", "exists": true}, {"pointer": "/input/c", "exists": true}]},
        {"pointer": "/input/d", "exists": true},
    ]}));
    let pointers: Vec<&str> = when.tests().iter().map(|t| t.pointer.as_str()).collect();
    assert_eq!(pointers, ["/input/a", "/input/b", "/input/c", "/input/d"]);
}

// ---------------------------------------------------------------------------------------------
// Runs: starting, and the steps that become ready
// ---------------------------------------------------------------------------------------------

#[test]
fn starting_a_diamond_makes_only_its_root_ready() {
    let def = diamond();
    let then = WorkflowRun::given([])
        .when(start(&def), t0())
        .then([started(&def), ready("a", 1, t0(), t0())]);
    let run = then.state();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(run.run_id, Some(RUN));
    assert_eq!(run.started_at, Some(t0()));
    assert_eq!(
        status(run, "a"),
        &StepStatus::Ready {
            attempt: 1,
            not_before: t0()
        }
    );
    for waiting in ["b", "c", "d"] {
        assert_eq!(status(run, waiting), &StepStatus::Pending, "{waiting}");
    }
}

#[test]
fn a_run_is_started_only_once() {
    story(&diamond(), [])
        .when(start(&diamond()), at(1))
        .then_err(RunError::AlreadyStarted);
}

#[test]
fn a_run_that_was_never_started_refuses_every_other_command() {
    let nothing = WorkflowRun::given([]);
    let refusal = nothing
        .when(begin("a", lease(t0())), t0())
        .then_err(RunError::NotFound);
    assert_eq!(refusal.code(), "run_not_found");
    nothing
        .when(
            RunCommand::Cancel {
                by: "alice".into(),
                reason: "typo".into(),
            },
            t0(),
        )
        .then_err(RunError::NotFound);
}

#[test]
fn an_attempt_begins_on_a_ready_step_with_a_key_naming_run_step_and_attempt() {
    let then = story(&diamond(), [])
        .when(begin("a", lease(at(1))), at(1))
        .then([attempt_started("a", 1, lease(at(1)), at(1))]);
    assert_eq!(then.state().step_states["a"].attempts.len(), 1);
    assert_eq!(
        then.state().step_states["a"].attempts[0].idempotency_key,
        format!("{RUN}:a:1")
    );

    // A step that is not ready, or already begun, cannot begin.
    let past = then.into_given();
    past.when(begin("a", lease(at(2))), at(2))
        .then_err(RunError::NotReady { step: "a".into() });
    past.when(begin("b", lease(at(2))), at(2))
        .then_err(RunError::NotReady { step: "b".into() });
    past.when(begin("nope", lease(at(2))), at(2))
        .then_err(RunError::UnknownStep("nope".into()));
}

#[test]
fn succeeding_the_root_makes_both_middle_steps_ready() {
    let then = story(&diamond(), [(begin("a", lease(at(1))), at(1))])
        .when(succeed("a", 1, json!({"score": 0.9})), at(2))
        .then([
            succeeded("a", 1, json!({"score": 0.9}), at(2)),
            ready("b", 1, at(2), at(2)),
            ready("c", 1, at(2), at(2)),
        ]);
    let run = then.state();
    assert_eq!(status(run, "a"), &StepStatus::Succeeded);
    assert_eq!(run.step_states["a"].output, Some(json!({"score": 0.9})));
    assert_eq!(status(run, "d"), &StepStatus::Pending);
    assert_eq!(
        run.context(),
        json!({"input": input(), "steps": {"a": {"output": {"score": 0.9}}}})
    );
}

#[test]
fn a_branch_whose_condition_does_not_hold_is_skipped_and_its_dependent_still_runs() {
    let mut def = diamond();
    def.steps[1].when = Some(condition(
        json!({"pointer": "/steps/a/output/score", "greater": 0.5}),
    ));
    let then = story(&def, [(begin("a", lease(at(1))), at(1))])
        .when(succeed("a", 1, json!({"score": 0.2})), at(2))
        .then([
            succeeded("a", 1, json!({"score": 0.2}), at(2)),
            RunEvent::StepSkipped {
                step: "b".into(),
                reason: SkipReason::Condition,
                at: at(2),
            },
            ready("c", 1, at(2), at(2)),
        ]);
    assert_eq!(status(then.state(), "b"), &StepStatus::Skipped);

    then.and_when(begin("c", lease(at(3))), at(3))
        .then_ok()
        .and_when(succeed("c", 1, json!("reviewed")), at(4))
        .then([
            succeeded("c", 1, json!("reviewed"), at(4)),
            ready("d", 1, at(4), at(4)),
        ]);
}

#[test]
fn a_root_whose_condition_on_the_input_does_not_hold_is_skipped_at_the_start() {
    let def = definition([
        json!({"id": "dea", "kind": "http", "when": {"pointer": "/input/state", "equals": "NY"}}),
        json!({"id": "file", "kind": "http", "depends_on": ["dea"]}),
    ]);
    WorkflowRun::given([]).when(start(&def), t0()).then([
        started(&def),
        RunEvent::StepSkipped {
            step: "dea".into(),
            reason: SkipReason::Condition,
            at: t0(),
        },
        ready("file", 1, t0(), t0()),
    ]);
}

#[test]
fn the_run_completes_when_every_step_is_done_with_each_steps_output() {
    let then = story(
        &diamond(),
        [
            (begin("a", lease(at(1))), at(1)),
            (succeed("a", 1, json!({"score": 0.9})), at(2)),
            (begin("b", lease(at(3))), at(3)),
            (begin("c", lease(at(3))), at(3)),
        ],
    )
    .when(succeed("b", 1, json!({"sent": true})), at(4))
    .then([succeeded("b", 1, json!({"sent": true}), at(4))]);
    let then = then
        .and_when(succeed("c", 1, json!({"approved": "bob"})), at(5))
        .then([
            succeeded("c", 1, json!({"approved": "bob"}), at(5)),
            ready("d", 1, at(5), at(5)),
        ]);
    let output = json!({
        "a": {"output": {"score": 0.9}},
        "b": {"output": {"sent": true}},
        "c": {"output": {"approved": "bob"}},
        "d": {"output": null},
    });
    let then = then
        .and_when(begin("d", lease(at(6))), at(6))
        .then_ok()
        .and_when(succeed("d", 1, Value::Null), at(7))
        .then([
            succeeded("d", 1, Value::Null, at(7)),
            RunEvent::RunCompleted {
                output: output.clone(),
                at: at(7),
            },
        ]);
    let run = then.state();
    assert_eq!(run.status, RunStatus::Completed);
    assert_eq!(run.output, Some(output));
    assert_eq!(run.ended_at, Some(at(7)));
    assert!(run.runnable().is_empty());
}

// ---------------------------------------------------------------------------------------------
// Runs: failures, retries and policies
// ---------------------------------------------------------------------------------------------

#[test]
fn the_backoff_is_half_the_exponential_delay_plus_jitter_times_the_other_half_capped() {
    let policy = RetryPolicy {
        max_attempts: 5,
        initial_backoff_ms: 10_000,
        multiplier: 2.0,
        max_backoff_ms: 30_000,
        max_elapsed_secs: None,
    };
    let ms = Duration::milliseconds;
    assert_eq!(policy.backoff(2, 0.0), ms(5_000));
    assert_eq!(policy.backoff(2, 0.5), ms(7_500));
    assert_eq!(policy.backoff(2, 1.0), ms(10_000));
    assert_eq!(policy.backoff(3, 0.0), ms(10_000));
    assert_eq!(policy.backoff(3, 1.0), ms(20_000));
    // 40 s capped at 30 s.
    assert_eq!(policy.backoff(4, 0.0), ms(15_000));
    assert_eq!(policy.backoff(4, 1.0), ms(30_000));
    // Jitter outside 0 to 1 is clamped.
    assert_eq!(policy.backoff(2, -3.0), ms(5_000));
    assert_eq!(policy.backoff(2, 7.0), ms(10_000));
}

#[test]
fn a_failed_attempt_is_retried_after_its_backoff_while_attempts_remain() {
    let def = retried();
    let then = story(&def, [(begin("notify", lease(at(1))), at(1))])
        .when(fail("notify", 1, "HTTP 503"), at(2))
        .then([
            failed("notify", 1, "HTTP 503", at(2)),
            ready("notify", 2, at(2) + Duration::seconds(5), at(2)),
        ]);
    let state = &then.state().step_states["notify"];
    assert_eq!(state.error, None, "a step ready again has no error");
    assert_eq!(state.ready_at, Some(t0()), "ready_at stays the first time");
    assert_eq!(state.attempts[0].error.as_deref(), Some("HTTP 503"));
    assert_eq!(state.attempts[0].ended_at, Some(at(2)));
    assert!(!state.attempts[0].interrupted);

    // Not before the backoff has passed.
    let past = then.into_given();
    past.when(begin("notify", lease(at(6))), at(6))
        .then_err(RunError::NotReady {
            step: "notify".into(),
        });
    past.when(begin("notify", lease(at(7))), at(7))
        .then([attempt_started("notify", 2, lease(at(7)), at(7))]);
}

#[test]
fn the_second_retry_waits_twice_as_long() {
    story(
        &retried(),
        [
            (begin("notify", lease(at(1))), at(1)),
            (fail("notify", 1, "HTTP 503"), at(2)),
            (begin("notify", lease(at(7))), at(7)),
        ],
    )
    .when(fail("notify", 2, "HTTP 503"), at(8))
    .then([
        failed("notify", 2, "HTTP 503", at(8)),
        ready("notify", 3, at(8) + Duration::seconds(10), at(8)),
    ]);
}

#[test]
fn the_last_failed_attempt_of_a_step_that_fails_the_run_fails_the_run() {
    let then = story(
        &retried(),
        [
            (begin("notify", lease(at(1))), at(1)),
            (fail("notify", 1, "HTTP 503"), at(2)),
            (begin("notify", lease(at(7))), at(7)),
            (fail("notify", 2, "HTTP 503"), at(8)),
            (begin("notify", lease(at(18))), at(18)),
        ],
    )
    .when(fail("notify", 3, "HTTP 500"), at(19))
    .then([
        failed("notify", 3, "HTTP 500", at(19)),
        RunEvent::StepFailed {
            step: "notify".into(),
            error: "HTTP 500".into(),
            at: at(19),
        },
        RunEvent::RunFailed {
            step: "notify".into(),
            error: "HTTP 500".into(),
            at: at(19),
        },
    ]);
    let run = then.state();
    assert_eq!(run.status, RunStatus::Failed);
    assert_eq!(
        run.error.as_deref(),
        Some("step \"notify\" failed: HTTP 500")
    );
    assert_eq!(run.ended_at, Some(at(19)));
    assert_eq!(status(run, "notify"), &StepStatus::Failed);
    assert_eq!(run.step_states["notify"].attempts.len(), 3);
}

#[test]
fn a_step_without_a_retry_policy_fails_the_run_on_its_first_failure() {
    story(&diamond(), [(begin("a", lease(at(1))), at(1))])
        .when(fail("a", 1, "HTTP 404"), at(2))
        .then([
            failed("a", 1, "HTTP 404", at(2)),
            RunEvent::StepFailed {
                step: "a".into(),
                error: "HTTP 404".into(),
                at: at(2),
            },
            RunEvent::RunFailed {
                step: "a".into(),
                error: "HTTP 404".into(),
                at: at(2),
            },
        ]);
}

#[test]
fn no_retry_starts_later_than_max_elapsed_after_the_step_first_became_ready() {
    let def = definition([json!({
        "id": "notify",
        "kind": "http",
        "retry": {"max_attempts": 5, "initial_backoff_ms": 10_000, "max_elapsed_secs": 30},
    })]);
    // Ready at t0; failing at 26 s would retry at 31 s, past the 30 s allowed.
    story(&def, [(begin("notify", lease(at(1))), at(1))])
        .when(fail("notify", 1, "HTTP 503"), at(26))
        .then([
            failed("notify", 1, "HTTP 503", at(26)),
            RunEvent::StepFailed {
                step: "notify".into(),
                error: "HTTP 503".into(),
                at: at(26),
            },
            RunEvent::RunFailed {
                step: "notify".into(),
                error: "HTTP 503".into(),
                at: at(26),
            },
        ]);
    story(&def, [(begin("notify", lease(at(1))), at(1))])
        .when(fail("notify", 1, "HTTP 503"), at(25))
        .then([
            failed("notify", 1, "HTTP 503", at(25)),
            ready("notify", 2, at(30), at(25)),
        ]);
}

/// `lookup`, which the run can do without, then `review`.
fn skippable() -> Definition {
    definition([
        json!({"id": "lookup", "kind": "http", "on_failure": "skip"}),
        json!({"id": "review", "kind": "human_task", "depends_on": ["lookup"]}),
    ])
}

#[test]
fn a_step_whose_policy_is_skip_is_skipped_when_it_fails_and_the_run_goes_on() {
    let then = story(&skippable(), [(begin("lookup", lease(at(1))), at(1))])
        .when(fail("lookup", 1, "registry unavailable"), at(2))
        .then([
            failed("lookup", 1, "registry unavailable", at(2)),
            RunEvent::StepSkipped {
                step: "lookup".into(),
                reason: SkipReason::Policy {
                    error: "registry unavailable".into(),
                },
                at: at(2),
            },
            ready("review", 1, at(2), at(2)),
        ]);
    let run = then.state();
    assert_eq!(status(run, "lookup"), &StepStatus::Skipped);
    assert_eq!(run.output_of("lookup"), Value::Null);
    assert_eq!(run.status, RunStatus::Running);
}

/// `verify`, done by hand when the automated check fails, then `approve` if it verified.
fn with_fallback() -> Definition {
    definition([
        json!({"id": "verify", "kind": "http", "on_failure": {"fallback": "verify_by_hand"}}),
        json!({"id": "verify_by_hand", "kind": "human_task"}),
        json!({
            "id": "approve",
            "kind": "http",
            "depends_on": ["verify"],
            "when": {"pointer": "/steps/verify/output/verified", "equals": true},
        }),
    ])
}

#[test]
fn a_fallback_is_not_run_unless_its_step_fails() {
    let def = with_fallback();
    assert_eq!(def.check(), Ok(()));
    assert_eq!(def.plan(), [vec!["verify"], vec!["approve"]]);
    let then = WorkflowRun::given([])
        .when(start(&def), t0())
        .then([started(&def), ready("verify", 1, t0(), t0())]);
    let then = then
        .and_when(begin("verify", lease(at(1))), at(1))
        .then_ok()
        .and_when(succeed("verify", 1, json!({"verified": true})), at(2))
        .then([
            succeeded("verify", 1, json!({"verified": true}), at(2)),
            ready("approve", 1, at(2), at(2)),
        ]);
    let then = then
        .and_when(begin("approve", lease(at(3))), at(3))
        .then_ok()
        .and_when(succeed("approve", 1, json!("ok")), at(4))
        .then_ok();
    assert_eq!(then.state().status, RunStatus::Completed);
    assert_eq!(status(then.state(), "verify_by_hand"), &StepStatus::Pending);
}

#[test]
fn a_failed_step_with_a_fallback_fails_over_and_the_fallback_becomes_ready() {
    let then = story(&with_fallback(), [(begin("verify", lease(at(1))), at(1))])
        .when(fail("verify", 1, "HTTP 502"), at(2))
        .then([
            failed("verify", 1, "HTTP 502", at(2)),
            RunEvent::StepFailedOver {
                step: "verify".into(),
                fallback: "verify_by_hand".into(),
                at: at(2),
            },
            ready("verify_by_hand", 1, at(2), at(2)),
        ]);
    let run = then.state();
    assert_eq!(
        status(run, "verify"),
        &StepStatus::FailedOver {
            fallback: "verify_by_hand".into()
        }
    );
    assert!(!run.satisfied("verify"), "not until its fallback is done");
    assert_eq!(status(run, "approve"), &StepStatus::Pending);
}

#[test]
fn the_run_completes_when_the_fallback_succeeds_and_dependents_see_the_fallbacks_output() {
    let then = story(
        &with_fallback(),
        [
            (begin("verify", lease(at(1))), at(1)),
            (fail("verify", 1, "HTTP 502"), at(2)),
            (begin("verify_by_hand", lease(at(3))), at(3)),
        ],
    )
    .when(
        succeed("verify_by_hand", 1, json!({"verified": true})),
        at(4),
    )
    .then([
        succeeded("verify_by_hand", 1, json!({"verified": true}), at(4)),
        // `approve`'s condition reads `verify`'s output, which is now the fallback's.
        ready("approve", 1, at(4), at(4)),
    ]);
    let run = then.state();
    assert!(run.satisfied("verify"));
    assert_eq!(run.output_of("verify"), json!({"verified": true}));

    let output = json!({
        "verify": {"output": {"verified": true}},
        "verify_by_hand": {"output": {"verified": true}},
        "approve": {"output": {"approved": true}},
    });
    let then = then
        .and_when(begin("approve", lease(at(5))), at(5))
        .then_ok()
        .and_when(succeed("approve", 1, json!({"approved": true})), at(6))
        .then([
            succeeded("approve", 1, json!({"approved": true}), at(6)),
            RunEvent::RunCompleted {
                output: output.clone(),
                at: at(6),
            },
        ]);
    assert_eq!(then.state().status, RunStatus::Completed);
    assert_eq!(then.state().output, Some(output));
}

#[test]
fn a_dependent_whose_condition_reads_a_failed_over_step_sees_the_fallbacks_output() {
    story(
        &with_fallback(),
        [
            (begin("verify", lease(at(1))), at(1)),
            (fail("verify", 1, "HTTP 502"), at(2)),
            (begin("verify_by_hand", lease(at(3))), at(3)),
        ],
    )
    .when(
        succeed("verify_by_hand", 1, json!({"verified": false})),
        at(4),
    )
    .then([
        succeeded("verify_by_hand", 1, json!({"verified": false}), at(4)),
        RunEvent::StepSkipped {
            step: "approve".into(),
            reason: SkipReason::Condition,
            at: at(4),
        },
        RunEvent::RunCompleted {
            output: json!({
                "verify": {"output": {"verified": false}},
                "verify_by_hand": {"output": {"verified": false}},
                "approve": {"output": null},
            }),
            at: at(4),
        },
    ]);
}

// ---------------------------------------------------------------------------------------------
// Runs: incidents, where a person decides
// ---------------------------------------------------------------------------------------------

/// `screen`, which a person looks at when it fails, then `enrol`.
fn asks_a_person() -> Definition {
    definition([
        json!({"id": "screen", "kind": "http", "on_failure": "ask_person"}),
        json!({"id": "enrol", "kind": "http", "depends_on": ["screen"]}),
    ])
}

/// The run of [`asks_a_person`] whose `screen` failed at 2 s, with its incident task created.
fn incident() -> Given<WorkflowRun> {
    story(
        &asks_a_person(),
        [
            (begin("screen", lease(at(1))), at(1)),
            (fail("screen", 1, "sanctions list timed out"), at(2)),
            (
                RunCommand::IncidentTaskCreated {
                    step: "screen".into(),
                    task_id: INCIDENT,
                },
                at(3),
            ),
        ],
    )
}

#[test]
fn the_last_failure_of_a_step_that_asks_a_person_opens_an_incident() {
    let then = story(&asks_a_person(), [(begin("screen", lease(at(1))), at(1))])
        .when(fail("screen", 1, "sanctions list timed out"), at(2))
        .then([
            failed("screen", 1, "sanctions list timed out", at(2)),
            RunEvent::IncidentOpened {
                step: "screen".into(),
                error: "sanctions list timed out".into(),
                at: at(2),
            },
        ]);
    let run = then.state();
    assert_eq!(run.status, RunStatus::Running);
    assert_eq!(status(run, "screen"), &StepStatus::NeedsPerson);
    assert_eq!(
        run.step_states["screen"].error.as_deref(),
        Some("sanctions list timed out")
    );
    // The executor is due to create the incident task.
    assert_eq!(
        run.runnable(),
        [Runnable {
            slot: "screen".into(),
            due_at: Some(t0()),
            running: false,
            task_id: None,
        }]
    );

    let then = then
        .and_when(
            RunCommand::IncidentTaskCreated {
                step: "screen".into(),
                task_id: INCIDENT,
            },
            at(3),
        )
        .then([RunEvent::IncidentTaskCreated {
            step: "screen".into(),
            task_id: INCIDENT,
            at: at(3),
        }]);
    assert_eq!(
        then.state().step_states["screen"].incident_task,
        Some(INCIDENT)
    );
    assert!(then.state().runnable().is_empty());
    // Creating it again (a retried executor) changes nothing.
    then.and_when(
        RunCommand::IncidentTaskCreated {
            step: "screen".into(),
            task_id: Uuid::from_u128(0xD0B1E),
        },
        at(4),
    )
    .then([]);
}

#[test]
fn a_person_retrying_an_incident_makes_the_step_ready_with_the_next_attempt() {
    let then = incident()
        .when(
            RunCommand::Retry {
                step: "screen".into(),
                by: "bob".into(),
            },
            at(60),
        )
        .then([
            RunEvent::StepRetried {
                step: "screen".into(),
                by: "bob".into(),
                at: at(60),
            },
            ready("screen", 2, at(60), at(60)),
        ]);
    let run = then.state();
    assert_eq!(run.step_states["screen"].decided_by.as_deref(), Some("bob"));
    // Nobody needs the incident task any more.
    assert_eq!(
        run.withdrawals.get(&INCIDENT).map(String::as_str),
        Some("screen")
    );

    then.and_when(begin("screen", lease(at(61))), at(61))
        .then([attempt_started("screen", 2, lease(at(61)), at(61))])
        .and_when(succeed("screen", 2, json!("clear")), at(62))
        .then([
            succeeded("screen", 2, json!("clear"), at(62)),
            ready("enrol", 1, at(62), at(62)),
        ]);
}

#[test]
fn a_person_skipping_an_incident_skips_the_step_and_the_run_goes_on() {
    let then = incident()
        .when(
            RunCommand::Skip {
                step: "screen".into(),
                by: "bob".into(),
            },
            at(60),
        )
        .then([
            RunEvent::StepSkipped {
                step: "screen".into(),
                reason: SkipReason::Person { by: "bob".into() },
                at: at(60),
            },
            ready("enrol", 1, at(60), at(60)),
        ]);
    let run = then.state();
    assert_eq!(status(run, "screen"), &StepStatus::Skipped);
    assert_eq!(run.step_states["screen"].decided_by.as_deref(), Some("bob"));
    assert_eq!(
        run.withdrawals.get(&INCIDENT).map(String::as_str),
        Some("screen")
    );
}

#[test]
fn only_a_step_waiting_for_a_persons_decision_can_be_retried_or_skipped() {
    let running = story(&asks_a_person(), [(begin("screen", lease(at(1))), at(1))]);
    let retry = |step: &str| RunCommand::Retry {
        step: step.into(),
        by: "bob".into(),
    };
    let skip = |step: &str| RunCommand::Skip {
        step: step.into(),
        by: "bob".into(),
    };
    let refusal = running
        .when(retry("screen"), at(2))
        .then_err(RunError::StepNotFailed("screen".into()));
    assert_eq!(refusal.code(), "step_not_failed");
    running
        .when(skip("screen"), at(2))
        .then_err(RunError::StepNotFailed("screen".into()));
    running
        .when(retry("enrol"), at(2))
        .then_err(RunError::StepNotFailed("enrol".into()));
    running
        .when(retry("nope"), at(2))
        .then_err(RunError::UnknownStep("nope".into()));

    // Once decided, the incident is closed.
    let retried = incident()
        .when(retry("screen"), at(60))
        .then_ok()
        .into_given();
    retried
        .when(retry("screen"), at(61))
        .then_err(RunError::StepNotFailed("screen".into()));
}

// ---------------------------------------------------------------------------------------------
// Runs: stale reports and leases
// ---------------------------------------------------------------------------------------------

#[test]
fn a_report_about_an_attempt_that_is_no_longer_current_is_refused() {
    // Attempt 1 failed and attempt 2 holds the step; attempt 1's executor reports late.
    let past = story(
        &retried(),
        [
            (begin("notify", lease(at(1))), at(1)),
            (fail("notify", 1, "HTTP 503"), at(2)),
            (begin("notify", lease(at(7))), at(7)),
        ],
    );
    let stale = RunError::StaleAttempt {
        step: "notify".into(),
        attempt: 1,
    };
    let refusal = past
        .when(succeed("notify", 1, json!("late")), at(8))
        .then_err(stale.clone());
    assert_eq!(refusal.code(), "stale_attempt");
    assert_eq!(details(&refusal), json!({"step": "notify", "attempt": 1}));
    past.when(fail("notify", 1, "late"), at(8))
        .then_err(stale.clone());
    past.when(
        wait("notify", 1, WaitOn::Signal { name: "x".into() }),
        at(8),
    )
    .then_err(stale);
    // Nor is any report about an attempt that has not begun.
    past.when(succeed("notify", 3, json!("early")), at(8))
        .then_err(RunError::StaleAttempt {
            step: "notify".into(),
            attempt: 3,
        });
}

#[test]
fn a_step_that_is_ready_but_not_begun_takes_no_reports() {
    story(&diamond(), [])
        .when(succeed("a", 1, json!("done")), at(1))
        .then_err(RunError::StaleAttempt {
            step: "a".into(),
            attempt: 1,
        });
}

#[test]
fn an_attempt_cannot_be_interrupted_while_it_holds_its_lease() {
    let refusal = story(&retried(), [(begin("notify", lease(at(1))), at(1))])
        .when(
            RunCommand::Interrupt {
                step: "notify".into(),
                attempt: 1,
                jitter: 0.0,
            },
            at(30),
        )
        .then_err(RunError::LeaseHeld {
            step: "notify".into(),
            attempt: 1,
        });
    assert_eq!(refusal.code(), "attempt_lease_held");
}

#[test]
fn an_attempt_whose_lease_ran_out_fails_as_interrupted_and_is_retried_if_the_policy_allows() {
    let interrupt = |attempt| RunCommand::Interrupt {
        step: "notify".into(),
        attempt,
        jitter: 0.0,
    };
    let past = story(&retried(), [(begin("notify", lease(at(1))), at(1))]);
    let then = past.when(interrupt(1), lease(at(1))).then([
        RunEvent::AttemptFailed {
            step: "notify".into(),
            attempt: 1,
            error: INTERRUPTED.into(),
            interrupted: true,
            at: lease(at(1)),
        },
        ready(
            "notify",
            2,
            lease(at(1)) + Duration::seconds(5),
            lease(at(1)),
        ),
    ]);
    let attempt = &then.state().step_states["notify"].attempts[0];
    assert!(attempt.interrupted);
    assert_eq!(attempt.error.as_deref(), Some(INTERRUPTED));

    // Interrupting it again, or an attempt that is not running, is stale.
    then.and_when(interrupt(1), at(120))
        .then_err(RunError::StaleAttempt {
            step: "notify".into(),
            attempt: 1,
        });

    // Without attempts left, the interruption applies the step's failure policy.
    story(&diamond(), [(begin("a", lease(at(1))), at(1))])
        .when(
            RunCommand::Interrupt {
                step: "a".into(),
                attempt: 1,
                jitter: 0.0,
            },
            at(100),
        )
        .then([
            RunEvent::AttemptFailed {
                step: "a".into(),
                attempt: 1,
                error: INTERRUPTED.into(),
                interrupted: true,
                at: at(100),
            },
            RunEvent::StepFailed {
                step: "a".into(),
                error: INTERRUPTED.into(),
                at: at(100),
            },
            RunEvent::RunFailed {
                step: "a".into(),
                error: INTERRUPTED.into(),
                at: at(100),
            },
        ]);
}

// ---------------------------------------------------------------------------------------------
// Runs: waits and signals
// ---------------------------------------------------------------------------------------------

/// `consent`, which waits for a signal, then `enrol`.
fn awaits_consent() -> Definition {
    definition([
        json!({"id": "consent", "kind": "signal", "config": {"name": "consent"}}),
        json!({"id": "enrol", "kind": "http", "depends_on": ["consent"]}),
    ])
}

fn signal(name: &str, payload: Value) -> RunCommand {
    RunCommand::Signal {
        name: name.into(),
        payload,
        by: "carol".into(),
    }
}

#[test]
fn a_signal_nobody_waits_for_is_refused() {
    // Begun, but not yet waiting.
    let refusal = story(&awaits_consent(), [(begin("consent", lease(at(1))), at(1))])
        .when(signal("consent", json!({"given": true})), at(2))
        .then_err(RunError::NotWaitingForSignal("consent".into()));
    assert_eq!(refusal.code(), "not_waiting_for_signal");
    assert_eq!(details(&refusal), json!({"signal": "consent"}));

    // Waiting, but for another signal.
    story(
        &awaits_consent(),
        [
            (begin("consent", lease(at(1))), at(1)),
            (
                wait(
                    "consent",
                    1,
                    WaitOn::Signal {
                        name: "consent".into(),
                    },
                ),
                at(2),
            ),
        ],
    )
    .when(signal("refusal", json!({})), at(3))
    .then_err(RunError::NotWaitingForSignal("refusal".into()));
}

#[test]
fn a_signal_succeeds_the_step_waiting_for_it_with_its_payload_as_output() {
    let on = WaitOn::Signal {
        name: "consent".into(),
    };
    let then = story(&awaits_consent(), [(begin("consent", lease(at(1))), at(1))])
        .when(wait("consent", 1, on.clone()), at(2))
        .then([RunEvent::AttemptWaiting {
            step: "consent".into(),
            attempt: 1,
            on: on.clone(),
            deadline: None,
            at: at(2),
        }]);
    assert_eq!(
        status(then.state(), "consent"),
        &StepStatus::Waiting {
            attempt: 1,
            on,
            deadline: None
        }
    );
    assert!(
        then.state().runnable().is_empty(),
        "a signal wait without a deadline is nobody's work"
    );

    let then = then
        .and_when(signal("consent", json!({"given": true})), at(3600))
        .then([
            RunEvent::SignalReceived {
                step: "consent".into(),
                name: "consent".into(),
                by: "carol".into(),
                at: at(3600),
            },
            succeeded("consent", 1, json!({"given": true}), at(3600)),
            ready("enrol", 1, at(3600), at(3600)),
        ]);
    assert_eq!(then.state().output_of("consent"), json!({"given": true}));
}

// ---------------------------------------------------------------------------------------------
// Runs: cancelling, and the tasks left to withdraw
// ---------------------------------------------------------------------------------------------

fn cancel() -> RunCommand {
    RunCommand::Cancel {
        by: "dave".into(),
        reason: "the applicant withdrew".into(),
    }
}

/// One human task, waited on.
fn review() -> Definition {
    definition([json!({"id": "review", "kind": "human_task"})])
}

#[test]
fn a_finished_run_cannot_be_cancelled_or_moved_on() {
    let completed = story(
        &review(),
        [
            (begin("review", lease(at(1))), at(1)),
            (succeed("review", 1, json!("ok")), at(2)),
        ],
    );
    assert_eq!(completed.state().status, RunStatus::Completed);
    let refusal = completed
        .when(cancel(), at(3))
        .then_err(RunError::Finished(RunStatus::Completed));
    assert_eq!(refusal.code(), "run_finished");
    assert_eq!(details(&refusal), json!({"status": "completed"}));
    completed
        .when(succeed("review", 1, json!("again")), at(3))
        .then_err(RunError::Finished(RunStatus::Completed));

    let cancelled = story(&review(), [(cancel(), at(1))]);
    cancelled
        .when(cancel(), at(2))
        .then_err(RunError::Finished(RunStatus::Cancelled));
    cancelled
        .when(begin("review", lease(at(2))), at(2))
        .then_err(RunError::Finished(RunStatus::Cancelled));

    let failed = story(
        &review(),
        [
            (begin("review", lease(at(1))), at(1)),
            (fail("review", 1, "boom"), at(2)),
        ],
    );
    failed
        .when(cancel(), at(3))
        .then_err(RunError::Finished(RunStatus::Failed));
}

#[test]
fn cancelling_a_run_withdraws_the_task_a_step_waits_on() {
    let past = story(
        &review(),
        [
            (begin("review", lease(at(1))), at(1)),
            (wait("review", 1, WaitOn::Task { task_id: TASK }), at(2)),
        ],
    );
    let then = past.when(cancel(), at(3)).then([RunEvent::RunCancelled {
        by: "dave".into(),
        reason: "the applicant withdrew".into(),
        at: at(3),
    }]);
    let run = then.state();
    assert_eq!(run.status, RunStatus::Cancelled);
    assert_eq!(run.cancelled_by.as_deref(), Some("dave"));
    assert_eq!(run.error.as_deref(), Some("the applicant withdrew"));
    assert_eq!(run.ended_at, Some(at(3)));
    assert_eq!(
        run.withdrawals.get(&TASK).map(String::as_str),
        Some("review")
    );
    assert_eq!(
        run.runnable(),
        [Runnable {
            slot: format!("withdraw:{TASK}"),
            due_at: Some(t0()),
            running: false,
            task_id: None,
        }]
    );

    let then = then
        .and_when(RunCommand::TaskWithdrawn { task_id: TASK }, at(4))
        .then([RunEvent::TaskWithdrawn {
            task_id: TASK,
            at: at(4),
        }]);
    assert!(then.state().withdrawals.is_empty());
    assert!(then.state().runnable().is_empty());
    let refusal = then
        .and_when(RunCommand::TaskWithdrawn { task_id: TASK }, at(5))
        .then_err(RunError::UnknownTask(TASK));
    assert_eq!(refusal.code(), "task_not_found");
}

#[test]
fn a_run_that_fails_withdraws_the_tasks_other_steps_wait_on() {
    let def = definition([
        json!({"id": "review", "kind": "human_task"}),
        json!({"id": "check", "kind": "http"}),
    ]);
    let then = story(
        &def,
        [
            (begin("review", lease(at(1))), at(1)),
            (wait("review", 1, WaitOn::Task { task_id: TASK }), at(2)),
            (begin("check", lease(at(3))), at(3)),
        ],
    )
    .when(fail("check", 1, "HTTP 500"), at(4))
    .then_ok();
    assert_eq!(then.state().status, RunStatus::Failed);
    assert_eq!(
        then.state().withdrawals.get(&TASK).map(String::as_str),
        Some("review")
    );
}

// ---------------------------------------------------------------------------------------------
// Runs: the executor's rows
// ---------------------------------------------------------------------------------------------

#[test]
fn runnable_lists_ready_steps_from_not_before_running_ones_from_lease_end_and_task_waits() {
    let def = definition([
        json!({"id": "fetch", "kind": "http", "retry": {"max_attempts": 3, "initial_backoff_ms": 10_000}}),
        json!({"id": "review", "kind": "human_task"}),
        json!({"id": "sync", "kind": "http"}),
        json!({"id": "after", "kind": "http", "depends_on": ["fetch", "review", "sync"]}),
    ]);
    let past = story(&def, []);
    let row = |slot: &str, due_at, running, task_id| Runnable {
        slot: slot.into(),
        due_at,
        running,
        task_id,
    };
    assert_eq!(
        past.state().runnable(),
        [
            row("fetch", Some(t0()), false, None),
            row("review", Some(t0()), false, None),
            row("sync", Some(t0()), false, None),
        ]
    );

    let past = story(
        &def,
        [
            (begin("fetch", lease(at(1))), at(1)),
            (fail("fetch", 1, "HTTP 503"), at(2)),
            (begin("review", lease(at(3))), at(3)),
            (wait("review", 1, WaitOn::Task { task_id: TASK }), at(4)),
            (begin("sync", lease(at(5))), at(5)),
        ],
    );
    assert_eq!(
        past.state().runnable(),
        [
            row("fetch", Some(at(7)), false, None),
            row("review", None, false, Some(TASK)),
            row("sync", Some(lease(at(5))), true, None),
        ]
    );
}

#[test]
fn runnable_makes_a_timer_due_at_its_end_or_its_deadline_whichever_is_first() {
    let def = definition([json!({"id": "pause", "kind": "wait"})]);
    let timer = |deadline| RunCommand::Wait {
        step: "pause".into(),
        attempt: 1,
        on: WaitOn::Timer { until: at(3600) },
        deadline,
    };
    let rows = |deadline| {
        story(
            &def,
            [
                (begin("pause", lease(at(1))), at(1)),
                (timer(deadline), at(2)),
            ],
        )
        .state()
        .runnable()
    };
    let row = |due| Runnable {
        slot: "pause".into(),
        due_at: Some(due),
        running: false,
        task_id: None,
    };
    assert_eq!(rows(None), [row(at(3600))]);
    assert_eq!(rows(Some(at(600))), [row(at(600))]);
    assert_eq!(rows(Some(at(7200))), [row(at(3600))]);
}
