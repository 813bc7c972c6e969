//! Positions in the global log.
//!
//! Concurrent transactions commit out of order, so the order in which readers see events cannot
//! be the order in which positions were handed out. Every event records the id of the transaction
//! that wrote it (`xid8`, assigned by PostgreSQL) next to its position, and readers walk the log
//! in `(transaction_id, position)` order, reading only events whose transaction is older than the
//! oldest transaction still running. Once a transaction id is below that horizon no new event can
//! ever appear before it, so a reader's cursor never has to step over a hole that may still fill.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::StoreError;

/// A reader's place in the log: everything at or before it has been seen.
///
/// Ordered lexicographically by transaction id, then position, which is the log's read order.
/// Written as `"{transaction_id}-{position}"`; `"0-0"` is the start of the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Cursor {
    /// The writing transaction's id: the primary sort key of the read order.
    pub transaction_id: u64,
    /// The event's global position: the tie-breaker within one transaction.
    pub position: i64,
}

impl Cursor {
    /// Before the first event.
    pub const START: Cursor = Cursor {
        transaction_id: 0,
        position: 0,
    };

    pub fn new(transaction_id: u64, position: i64) -> Self {
        Self {
            transaction_id,
            position,
        }
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.transaction_id, self.position)
    }
}

impl FromStr for Cursor {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let invalid = || StoreError::InvalidCursor {
            value: s.chars().take(64).collect(),
        };
        let (tx, pos) = s.split_once('-').ok_or_else(invalid)?;
        let all_digits =
            |p: &str| !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit());
        if !all_digits(tx) || !all_digits(pos) {
            return Err(invalid());
        }
        Ok(Cursor {
            transaction_id: tx.parse().map_err(|_| invalid())?,
            position: pos.parse().map_err(|_| invalid())?,
        })
    }
}

impl Serialize for Cursor {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Cursor {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_through_its_text_form() {
        let c = Cursor::new(812, 40);
        assert_eq!(c.to_string(), "812-40");
        assert_eq!("812-40".parse::<Cursor>().ok(), Some(c));
    }

    #[test]
    fn cursors_order_by_transaction_before_position() {
        assert!(Cursor::new(1, 900) < Cursor::new(2, 5));
        assert!(Cursor::new(2, 5) < Cursor::new(2, 6));
    }

    #[test]
    fn malformed_cursors_are_refused() {
        for bad in [
            "",
            "12",
            "a-1",
            "1-",
            "-1",
            "1-2-3",
            "1--2",
            "99999999999999999999999-1",
            "1-99999999999999999999",
        ] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?} was accepted");
        }
    }
}
