//! Schema evolution on read: stored events are never rewritten; readers see the current shape.
//!
//! An upcaster turns one event type's payload from schema version `n` to `n + 1`. Chains run in
//! order, so an event stored at v1 and read when v3 is current passes through both steps.

use std::collections::HashMap;
use std::fmt;

use serde_json::Value;

/// One step: the payload at version `n` in, the payload at `n + 1` out (or why it cannot be).
pub type UpcastFn = fn(Value) -> Result<Value, String>;

/// The registered upcasters, keyed by event type and the version they upgrade from.
#[derive(Default, Clone)]
pub struct Upcasters {
    steps: HashMap<(String, u32), UpcastFn>,
}

impl fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut keys: Vec<_> = self.steps.keys().collect();
        keys.sort();
        f.debug_struct("Upcasters").field("steps", &keys).finish()
    }
}

impl Upcasters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step that upgrades `event_type` payloads from `from_version` to the next.
    pub fn register(mut self, event_type: &str, from_version: u32, step: UpcastFn) -> Self {
        self.steps
            .insert((event_type.to_owned(), from_version), step);
        self
    }

    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Applies every registered step from `version` on; returns the final version and payload.
    pub fn upcast(
        &self,
        event_type: &str,
        mut version: u32,
        mut payload: Value,
    ) -> Result<(u32, Value), String> {
        if self.steps.is_empty() {
            return Ok((version, payload));
        }
        let mut key = (event_type.to_owned(), version);
        while let Some(step) = self.steps.get(&key) {
            payload = step(payload).map_err(|e| format!("upcasting from v{version}: {e}"))?;
            version += 1;
            key.1 = version;
        }
        Ok((version, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn split_name(mut v: Value) -> Result<Value, String> {
        let obj = v.as_object_mut().ok_or("not an object")?;
        let name = obj
            .remove("name")
            .and_then(|n| n.as_str().map(str::to_owned))
            .ok_or("no name")?;
        let (first, last) = name.split_once(' ').unwrap_or((name.as_str(), ""));
        obj.insert("first_name".into(), json!(first));
        obj.insert("last_name".into(), json!(last));
        Ok(v)
    }

    fn add_title(mut v: Value) -> Result<Value, String> {
        v.as_object_mut()
            .ok_or("not an object")?
            .insert("title".into(), json!(null));
        Ok(v)
    }

    #[test]
    fn chains_of_steps_run_in_order() {
        let up = Upcasters::new()
            .register("PhysicianRegistered", 1, split_name)
            .register("PhysicianRegistered", 2, add_title);
        let out = up.upcast("PhysicianRegistered", 1, json!({"name": "Ada Lovelace"}));
        assert_eq!(
            out,
            Ok((
                3,
                json!({"first_name": "Ada", "last_name": "Lovelace", "title": null})
            ))
        );
    }

    #[test]
    fn events_without_steps_pass_through() {
        let up = Upcasters::new().register("Other", 1, add_title);
        assert_eq!(
            up.upcast("Same", 4, json!({"a": 1})),
            Ok((4, json!({"a": 1})))
        );
    }
}
