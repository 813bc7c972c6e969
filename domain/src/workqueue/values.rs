//! Values shared by queues, tasks and cases, each checked once where it is made.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused; the message starts with the field's name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct ValueError {
    pub field: &'static str,
    pub reason: String,
}

impl ValueError {
    /// The field at fault, as a refusal's details.
    pub fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        crate::refusal::fields(serde_json::json!({ "field": self.field }))
    }
}

pub(crate) fn value_error(field: &'static str, reason: impl Into<String>) -> ValueError {
    ValueError {
        field,
        reason: reason.into(),
    }
}

/// A task's priority: 1 (lowest) to 5 (most urgent). Claim-next serves higher numbers first,
/// as the seed's `ORDER BY priority DESC` does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "PriorityRepr", into = "i64")]
pub struct Priority(u8);

/// A priority as written: a number, or (as a JSON object key, e.g. in an SLA table) a string.
#[derive(Deserialize)]
#[serde(untagged)]
enum PriorityRepr {
    Number(i64),
    Text(String),
}

impl TryFrom<PriorityRepr> for Priority {
    type Error = ValueError;
    fn try_from(value: PriorityRepr) -> Result<Self, Self::Error> {
        match value {
            PriorityRepr::Number(n) => Priority::new(n),
            PriorityRepr::Text(t) => t
                .trim()
                .parse::<i64>()
                .map_err(|_| value_error("priority", format!("{t:?} is not a number from 1 to 5")))
                .and_then(Priority::new),
        }
    }
}

impl Priority {
    pub const HIGHEST: Priority = Priority(5);
    /// Every priority, lowest first.
    pub const ALL: [Priority; 5] = [
        Priority(1),
        Priority(2),
        Priority(3),
        Priority(4),
        Priority(5),
    ];

    pub fn new(value: i64) -> Result<Self, ValueError> {
        match u8::try_from(value) {
            Ok(v @ 1..=5) => Ok(Priority(v)),
            _ => Err(value_error(
                "priority",
                format!("{value} is out of range; give 1 (lowest) to 5 (most urgent)"),
            )),
        }
    }

    pub fn get(self) -> u8 {
        self.0
    }

    /// Raised by `steps`, never past [`Priority::HIGHEST`].
    pub fn raised_by(self, steps: u8) -> Priority {
        Priority(self.0.saturating_add(steps).min(Self::HIGHEST.0))
    }
}

impl TryFrom<i64> for Priority {
    type Error = ValueError;
    fn try_from(value: i64) -> Result<Self, Self::Error> {
        Priority::new(value)
    }
}

impl From<Priority> for i64 {
    fn from(p: Priority) -> i64 {
        i64::from(p.0)
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// The longest group label, in characters.
pub const MAX_GROUP_CHARS: usize = 40;
/// The most candidate groups a queue declares (and so a task or a grant names).
pub const MAX_GROUPS: usize = 32;

/// A candidate group (a skill): lower-case letters, digits, `_` and `-`, 1 to 40 characters.
/// Input is trimmed and lower-cased, so `"Billing "` and `"billing"` are one group.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GroupLabel(String);

impl GroupLabel {
    pub fn parse(value: &str) -> Result<Self, ValueError> {
        let v = value.trim().to_lowercase();
        let ok = (1..=MAX_GROUP_CHARS).contains(&v.chars().count())
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        if ok {
            Ok(GroupLabel(v))
        } else {
            Err(value_error(
                "group",
                format!(
                    "{:?} is not a group label; use 1 to {MAX_GROUP_CHARS} letters, digits, _ or -",
                    value.chars().take(MAX_GROUP_CHARS).collect::<String>()
                ),
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for GroupLabel {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        GroupLabel::parse(&s)
    }
}

impl From<GroupLabel> for String {
    fn from(g: GroupLabel) -> String {
        g.0
    }
}

impl fmt::Display for GroupLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Parses a list of group labels, sorted and without repeats, at most [`MAX_GROUPS`].
pub fn parse_groups(field: &'static str, values: &[String]) -> Result<Vec<GroupLabel>, ValueError> {
    let mut groups = values
        .iter()
        .map(|v| {
            GroupLabel::parse(v).map_err(|e| ValueError {
                field,
                reason: e.reason,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    groups.sort();
    groups.dedup();
    if groups.len() > MAX_GROUPS {
        return Err(value_error(
            field,
            format!("{} groups given; at most {MAX_GROUPS}", groups.len()),
        ));
    }
    Ok(groups)
}

/// Free text a person writes (a name, a reason, an outcome): trimmed, whitespace runs collapsed,
/// 1 to `max` characters, no control characters.
pub fn text(field: &'static str, value: &str, max: usize) -> Result<String, ValueError> {
    let v = value.split_whitespace().collect::<Vec<_>>().join(" ");
    if v.is_empty() {
        return Err(value_error(field, "must not be empty"));
    }
    if v.chars().count() > max {
        return Err(value_error(field, format!("at most {max} characters")));
    }
    if v.chars().any(char::is_control) {
        return Err(value_error(field, "must not contain control characters"));
    }
    Ok(v)
}

/// The longest reason (for a hand-off, a routing, a cancellation), in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Namespace of the UUID v5 ids that make department codes, queue names and case numbers
/// unique: two creations of one name meet on one stream, however they race.
const WORKQUEUE_NAMESPACE: Uuid = Uuid::from_u128(0x9b4e_2f61_7c0a_4d93_a5e8_13f2_6b7d_c041);

pub(crate) fn name_id(kind: &str, key: &str) -> Uuid {
    Uuid::new_v5(&WORKQUEUE_NAMESPACE, format!("{kind}:{key}").as_bytes())
}

/// The key a name is unique by: lower-cased, whitespace runs collapsed.
pub fn name_key(name: &str) -> String {
    name.to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priority_accepts_one_to_five_and_names_the_range_otherwise() {
        assert!(Priority::new(1).is_ok() && Priority::new(5).is_ok());
        let e = Priority::new(6).expect_err("refused in this test");
        assert_eq!(e.field, "priority");
        assert!(e.reason.contains("1 (lowest) to 5"), "{e}");
        assert!(Priority::new(0).is_err() && Priority::new(-3).is_err());
    }

    #[test]
    fn an_sla_table_keyed_by_priority_survives_a_json_round_trip() {
        let table: std::collections::BTreeMap<Priority, u32> = Priority::ALL
            .into_iter()
            .map(|p| (p, u32::from(p.get())))
            .collect();
        let json = serde_json::to_value(&table).expect("valid in this test");
        let back: std::collections::BTreeMap<Priority, u32> =
            serde_json::from_value(json).expect("valid in this test");
        assert_eq!(back, table);
    }

    #[test]
    fn raising_a_priority_stops_at_the_highest() {
        assert_eq!(
            Priority::new(3)
                .expect("valid in this test")
                .raised_by(1)
                .get(),
            4
        );
        assert_eq!(
            Priority::new(4).expect("valid in this test").raised_by(3),
            Priority::HIGHEST
        );
    }

    #[test]
    fn group_labels_are_normalised_and_lists_deduplicated() {
        let groups = parse_groups(
            "groups",
            &[" Billing".into(), "billing".into(), "dea".into()],
        )
        .expect("valid in this test");
        assert_eq!(
            groups.iter().map(GroupLabel::as_str).collect::<Vec<_>>(),
            ["billing", "dea"]
        );
        assert!(GroupLabel::parse("two words").is_err());
        assert!(GroupLabel::parse("").is_err());
    }

    #[test]
    fn text_is_trimmed_and_bounded() {
        assert_eq!(
            text("reason", "  out   sick ", 20).expect("valid in this test"),
            "out sick"
        );
        assert!(text("reason", "   ", 20).is_err());
        assert!(text("reason", &"x".repeat(21), 20).is_err());
        assert!(text("reason", "a\u{0}b", 20).is_err());
    }
}
