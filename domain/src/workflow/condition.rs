//! `when` conditions: a small declarative test over a run's input and its earlier steps'
//! outputs. No scripting language on purpose: a condition can be checked at registration (it
//! may only look at the run's input and at steps that are certain to have finished), read by an
//! auditor, and evaluated the same way forever.
//!
//! A condition is a test on one value, or `all` / `any` of conditions:
//!
//! ```json
//! {"all": [{"pointer": "/input/state", "in": ["CA", "NY"]},
//!          {"pointer": "/steps/verify/output/score", "greater": 0.8}]}
//! ```
//!
//! Pointers (RFC 6901) start at `/input` (the run's input) or `/steps/<id>/output` (an earlier
//! step's output). A missing value is never equal to anything, does not exist, and is neither
//! greater nor less than a number.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A `when` condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Condition {
    All { all: Vec<Condition> },
    Any { any: Vec<Condition> },
    Test(Test),
}

/// One test on the value a pointer finds. Exactly one operator is given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Test {
    pub pointer: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub equals: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_equals: Option<Value>,
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub one_of: Option<Vec<Value>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exists: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub greater: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub less: Option<f64>,
}

/// Where a pointer looks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source<'a> {
    Input,
    /// The output of the named step.
    Step(&'a str),
}

impl Condition {
    /// Every test in the condition, depth first.
    pub fn tests(&self) -> Vec<&Test> {
        match self {
            Condition::All { all: parts } | Condition::Any { any: parts } => {
                parts.iter().flat_map(Condition::tests).collect()
            }
            Condition::Test(test) => vec![test],
        }
    }

    /// Checks the condition's shape: each test has one operator and a pointer into the input or
    /// a step's output; `all`/`any` are not empty. Returns the problem in words.
    pub fn check(&self) -> Result<(), String> {
        match self {
            Condition::All { all: parts } | Condition::Any { any: parts } => {
                if parts.is_empty() {
                    return Err("`all` and `any` need at least one condition".into());
                }
                parts.iter().try_for_each(Condition::check)
            }
            Condition::Test(test) => test.check(),
        }
    }

    /// Evaluates the condition against a run's context, `{"input": ..., "steps": {id: {"output": ...}}}`.
    pub fn holds(&self, context: &Value) -> bool {
        match self {
            Condition::All { all } => all.iter().all(|c| c.holds(context)),
            Condition::Any { any } => any.iter().any(|c| c.holds(context)),
            Condition::Test(test) => test.holds(context),
        }
    }
}

impl Test {
    /// What the pointer looks at; `None` if it starts anywhere else.
    pub fn source(&self) -> Option<Source<'_>> {
        let p = self.pointer.as_str();
        if p == "/input" || p.starts_with("/input/") {
            return Some(Source::Input);
        }
        let rest = p.strip_prefix("/steps/")?;
        let (step, after) = rest.split_once('/')?;
        (after == "output" || after.starts_with("output/")).then_some(Source::Step(step))
    }

    fn operators(&self) -> usize {
        [
            self.equals.is_some(),
            self.not_equals.is_some(),
            self.one_of.is_some(),
            self.exists.is_some(),
            self.greater.is_some(),
            self.less.is_some(),
        ]
        .into_iter()
        .filter(|b| *b)
        .count()
    }

    fn check(&self) -> Result<(), String> {
        if self.source().is_none() {
            return Err(format!(
                "pointer {:?} must start with /input or /steps/<step id>/output",
                self.pointer
            ));
        }
        match self.operators() {
            1 => Ok(()),
            0 => Err(format!(
                "the test on {:?} needs one of equals, not_equals, in, exists, greater, less",
                self.pointer
            )),
            _ => Err(format!(
                "the test on {:?} has more than one operator; combine tests with all/any",
                self.pointer
            )),
        }
    }

    fn holds(&self, context: &Value) -> bool {
        let found = context.pointer(&self.pointer).filter(|v| !v.is_null());
        if let Some(expected) = &self.equals {
            return found == Some(expected);
        }
        if let Some(unexpected) = &self.not_equals {
            return found != Some(unexpected);
        }
        if let Some(options) = &self.one_of {
            return found.is_some_and(|v| options.contains(v));
        }
        if let Some(should_exist) = self.exists {
            return found.is_some() == should_exist;
        }
        let number = found.and_then(Value::as_f64);
        if let Some(bound) = self.greater {
            return number.is_some_and(|n| n > bound);
        }
        if let Some(bound) = self.less {
            return number.is_some_and(|n| n < bound);
        }
        false
    }
}
