//! Departments: a hierarchy that queues belong to (seed 004, "hierarchical department
//! structure with parent-child relationships").
//!
//! A department's stream id is a UUID v5 of its code ([`Department::stream_id`]), so a code is
//! taken once. Its parent is fixed at creation and must exist then (a look-up made outside
//! arrives in the command), so every department's ancestors were created before it and the
//! hierarchy cannot contain a cycle.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::values::{name_id, text, value_error, ValueError};
use crate::Aggregate;

/// The longest department name, in characters.
pub const MAX_NAME_CHARS: usize = 120;

/// A department code: 2 to 20 upper-case letters, digits, `_` or `-` (`CRED`, `CRED-EAST`).
/// Input is trimmed and upper-cased.
pub fn parse_code(value: &str) -> Result<String, ValueError> {
    let v = value.trim().to_uppercase();
    let ok = (2..=20).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
    if ok {
        Ok(v)
    } else {
        Err(value_error(
            "code",
            "use 2 to 20 letters, digits, _ or - (e.g. CRED-EAST)",
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum DepartmentCommand {
    Create {
        code: String,
        name: String,
        /// The parent, if any, and whether it exists (looked up outside).
        parent: Option<ParentLookup>,
    },
    Rename {
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentLookup {
    pub id: Uuid,
    pub exists: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum DepartmentEvent {
    DepartmentCreated {
        code: String,
        name: String,
        parent_id: Option<Uuid>,
        at: DateTime<Utc>,
    },
    DepartmentRenamed {
        name: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DepartmentError {
    #[error("department {code} already exists")]
    CodeTaken { code: String },
    #[error("no such department")]
    NotFound,
    #[error("parent department {parent_id} does not exist")]
    UnknownParent { parent_id: Uuid },
    #[error(transparent)]
    Invalid(#[from] ValueError),
}

impl crate::refusal::Refusal for DepartmentError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        match self {
            DepartmentError::CodeTaken { .. } => K::Conflict,
            DepartmentError::NotFound => K::NotFound,
            DepartmentError::UnknownParent { .. } | DepartmentError::Invalid(_) => K::Invalid,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            DepartmentError::CodeTaken { .. } => "department_code_taken",
            DepartmentError::NotFound => "department_not_found",
            DepartmentError::UnknownParent { .. } => "unknown_department",
            DepartmentError::Invalid(_) => "invalid_field",
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            DepartmentError::Invalid(v) => v.details(),
            _ => serde_json::Map::new(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Department {
    pub code: Option<String>,
    pub name: String,
    pub parent_id: Option<Uuid>,
}

impl Department {
    pub fn stream_id(code: &str) -> Uuid {
        name_id("department", code)
    }

    pub fn exists(&self) -> bool {
        self.code.is_some()
    }
}

impl Aggregate for Department {
    const STREAM_TYPE: &'static str = "department";
    type Command = DepartmentCommand;
    type Event = DepartmentEvent;
    type Error = DepartmentError;

    fn decide(
        &self,
        command: &DepartmentCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<DepartmentEvent>, DepartmentError> {
        match command {
            DepartmentCommand::Create { code, name, parent } => {
                let code = parse_code(code)?;
                if self.exists() {
                    return Err(DepartmentError::CodeTaken { code });
                }
                let name = text("name", name, MAX_NAME_CHARS)?;
                if let Some(p) = parent.filter(|p| !p.exists) {
                    return Err(DepartmentError::UnknownParent { parent_id: p.id });
                }
                Ok(vec![DepartmentEvent::DepartmentCreated {
                    code,
                    name,
                    parent_id: parent.map(|p| p.id),
                    at: now,
                }])
            }
            DepartmentCommand::Rename { name } => {
                if !self.exists() {
                    return Err(DepartmentError::NotFound);
                }
                let name = text("name", name, MAX_NAME_CHARS)?;
                if name == self.name {
                    return Ok(Vec::new());
                }
                Ok(vec![DepartmentEvent::DepartmentRenamed { name, at: now }])
            }
        }
    }

    fn evolve(mut self, event: &DepartmentEvent) -> Self {
        match event {
            DepartmentEvent::DepartmentCreated {
                code,
                name,
                parent_id,
                ..
            } => {
                self.code = Some(code.clone());
                self.name = name.clone();
                self.parent_id = *parent_id;
            }
            DepartmentEvent::DepartmentRenamed { name, .. } => self.name = name.clone(),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap_or_default()
    }

    fn create(parent: Option<ParentLookup>) -> DepartmentCommand {
        DepartmentCommand::Create {
            code: " cred-east ".into(),
            name: "Credentialing East".into(),
            parent,
        }
    }

    #[test]
    fn a_department_is_created_with_its_code_upper_cased() {
        let events = Department::default()
            .decide(&create(None), now())
            .expect("valid in this test");
        let state = crate::fold::<Department>(&events);
        assert_eq!(state.code.as_deref(), Some("CRED-EAST"));
    }

    #[test]
    fn a_department_cannot_hang_under_a_parent_that_does_not_exist() {
        let parent = ParentLookup {
            id: Uuid::nil(),
            exists: false,
        };
        assert_eq!(
            Department::default().decide(&create(Some(parent)), now()),
            Err(DepartmentError::UnknownParent {
                parent_id: Uuid::nil()
            })
        );
    }

    #[test]
    fn a_code_is_taken_once() {
        let events = Department::default()
            .decide(&create(None), now())
            .expect("valid in this test");
        let state = crate::fold::<Department>(&events);
        assert!(matches!(
            state.decide(&create(None), now()),
            Err(DepartmentError::CodeTaken { .. })
        ));
    }
}
