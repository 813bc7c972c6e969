//! Physicians: registration (NPI checked), updates, deactivation.
//!
//! A physician's stream id is derived from the NPI ([`Physician::stream_id`]), so registering the
//! same NPI twice collides on the stream and can never produce two physicians, however the
//! requests race. The NPI therefore never changes; everything else may.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jurisdiction::Jurisdiction;
use crate::Aggregate;

/// A National Provider Identifier: ten digits whose last is a Luhn check digit computed over
/// the prefix `80840` and the first nine digits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Npi(String);

/// Why a value is not an NPI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("npi {value:?} is not valid: {reason}")]
pub struct InvalidNpi {
    pub value: String,
    pub reason: &'static str,
}

impl Npi {
    pub fn parse(value: &str) -> Result<Self, InvalidNpi> {
        let invalid = |reason| InvalidNpi {
            value: value.chars().take(20).collect(),
            reason,
        };
        if value.len() != 10 || !value.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("an NPI is exactly 10 digits"));
        }
        if !luhn_valid(&format!("80840{value}")) {
            return Err(invalid("the check digit does not match"));
        }
        Ok(Npi(value.to_owned()))
    }

    /// The NPI that nine digits become with their check digit (for generating data).
    pub fn with_check_digit(first_nine: &str) -> Option<Npi> {
        let digit = Self::check_digit(first_nine)?;
        Some(Npi(format!("{first_nine}{digit}")))
    }

    /// The check digit that completes nine digits into an NPI.
    pub fn check_digit(first_nine: &str) -> Option<u8> {
        if first_nine.len() != 9 || !first_nine.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        (0..=9u8).find(|d| luhn_valid(&format!("80840{first_nine}{d}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The Luhn check: doubling every second digit from the right, the digit sum is a multiple of 10.
fn luhn_valid(digits: &str) -> bool {
    let sum: u32 = digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(i, b)| {
            let d = u32::from(b - b'0');
            if i % 2 == 1 {
                let doubled = d * 2;
                doubled / 10 + doubled % 10
            } else {
                d
            }
        })
        .sum();
    sum % 10 == 0
}

impl fmt::Display for Npi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Npi {
    type Error = InvalidNpi;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Npi::parse(&value)
    }
}

impl From<Npi> for String {
    fn from(n: Npi) -> Self {
        n.0
    }
}

/// A physician's details as submitted: validated on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicianDetails {
    pub name: String,
    pub email: String,
    pub specialty: String,
    /// States of practice.
    pub states: Vec<Jurisdiction>,
}

impl PhysicianDetails {
    fn check(&self) -> Result<(), PhysicianError> {
        for (field, value) in [
            ("name", &self.name),
            ("email", &self.email),
            ("specialty", &self.specialty),
        ] {
            if value.chars().any(char::is_control) {
                return Err(PhysicianError::InvalidField {
                    field,
                    reason: "control characters are not allowed",
                });
            }
        }
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(PhysicianError::InvalidField {
                field: "name",
                reason: "give 1 to 200 characters",
            });
        }
        if !crate::contact::plausible_email(self.email.trim()) {
            return Err(PhysicianError::InvalidField {
                field: "email",
                reason: "not an e-mail address",
            });
        }
        if self.specialty.trim().is_empty() || self.specialty.chars().count() > 100 {
            return Err(PhysicianError::InvalidField {
                field: "specialty",
                reason: "give 1 to 100 characters",
            });
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PhysicianCommand {
    Register {
        npi: Npi,
        details: PhysicianDetails,
    },
    /// Replaces the details (everything but the NPI).
    Update {
        details: PhysicianDetails,
    },
    Deactivate,
    Reactivate,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PhysicianEvent {
    PhysicianRegistered {
        npi: Npi,
        name: String,
        email: String,
        specialty: String,
        states: Vec<Jurisdiction>,
    },
    PhysicianUpdated {
        name: String,
        email: String,
        specialty: String,
        states: Vec<Jurisdiction>,
    },
    PhysicianDeactivated {},
    PhysicianReactivated {},
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhysicianError {
    #[error("no physician with this id")]
    NotFound,
    #[error("a physician with NPI {npi} is already registered")]
    NpiTaken { npi: Npi },
    #[error("{field}: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("the physician is already inactive")]
    AlreadyInactive,
    #[error("the physician is already active")]
    AlreadyActive,
    #[error("nothing to change: the details are the same")]
    Unchanged,
}

impl crate::refusal::Refusal for PhysicianError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        match self {
            PhysicianError::NotFound => K::NotFound,
            PhysicianError::InvalidField { .. } => K::Invalid,
            PhysicianError::NpiTaken { .. }
            | PhysicianError::AlreadyInactive
            | PhysicianError::AlreadyActive
            | PhysicianError::Unchanged => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            PhysicianError::NotFound => "physician_not_found",
            PhysicianError::NpiTaken { .. } => "npi_taken",
            PhysicianError::InvalidField { .. } => "invalid_field",
            PhysicianError::AlreadyInactive | PhysicianError::AlreadyActive => "physician_state",
            PhysicianError::Unchanged => "unchanged",
        }
    }
}

/// A physician's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Physician {
    /// `None` until registered.
    pub npi: Option<Npi>,
    pub name: String,
    pub email: String,
    pub specialty: String,
    pub states: Vec<Jurisdiction>,
    pub active: bool,
}

/// Namespace of physician stream ids (UUID v5 of the NPI).
const PHYSICIAN_NAMESPACE: Uuid = Uuid::from_u128(0x7c1f_0e57_9a1b_4a8e_b0c4_5d3f_6e2a_1b90);

impl Physician {
    /// The stream id of the physician with this NPI.
    pub fn stream_id(npi: &Npi) -> Uuid {
        Uuid::new_v5(&PHYSICIAN_NAMESPACE, npi.as_str().as_bytes())
    }

    pub fn exists(&self) -> bool {
        self.npi.is_some()
    }
}

fn normalized(details: &PhysicianDetails) -> PhysicianDetails {
    let mut states = details.states.clone();
    states.sort();
    states.dedup();
    PhysicianDetails {
        name: details.name.trim().to_owned(),
        email: details.email.trim().to_ascii_lowercase(),
        specialty: details.specialty.trim().to_owned(),
        states,
    }
}

impl Aggregate for Physician {
    const STREAM_TYPE: &'static str = "physician";
    type Command = PhysicianCommand;
    type Event = PhysicianEvent;
    type Error = PhysicianError;

    fn decide(
        &self,
        command: &PhysicianCommand,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PhysicianEvent>, PhysicianError> {
        use PhysicianCommand as C;
        use PhysicianEvent as E;
        match (command, &self.npi) {
            (C::Register { npi, .. }, Some(_)) => {
                Err(PhysicianError::NpiTaken { npi: npi.clone() })
            }
            (C::Register { npi, details }, None) => {
                details.check()?;
                let d = normalized(details);
                Ok(vec![E::PhysicianRegistered {
                    npi: npi.clone(),
                    name: d.name,
                    email: d.email,
                    specialty: d.specialty,
                    states: d.states,
                }])
            }
            (_, None) => Err(PhysicianError::NotFound),
            (C::Update { details }, Some(_)) => {
                details.check()?;
                let d = normalized(details);
                if d.name == self.name
                    && d.email == self.email
                    && d.specialty == self.specialty
                    && d.states == self.states
                {
                    return Err(PhysicianError::Unchanged);
                }
                Ok(vec![E::PhysicianUpdated {
                    name: d.name,
                    email: d.email,
                    specialty: d.specialty,
                    states: d.states,
                }])
            }
            (C::Deactivate, Some(_)) if !self.active => Err(PhysicianError::AlreadyInactive),
            (C::Deactivate, Some(_)) => Ok(vec![E::PhysicianDeactivated {}]),
            (C::Reactivate, Some(_)) if self.active => Err(PhysicianError::AlreadyActive),
            (C::Reactivate, Some(_)) => Ok(vec![E::PhysicianReactivated {}]),
        }
    }

    fn evolve(mut self, event: &PhysicianEvent) -> Self {
        match event {
            PhysicianEvent::PhysicianRegistered {
                npi,
                name,
                email,
                specialty,
                states,
            } => {
                self.npi = Some(npi.clone());
                self.name = name.clone();
                self.email = email.clone();
                self.specialty = specialty.clone();
                self.states = states.clone();
                self.active = true;
            }
            PhysicianEvent::PhysicianUpdated {
                name,
                email,
                specialty,
                states,
            } => {
                self.name = name.clone();
                self.email = email.clone();
                self.specialty = specialty.clone();
                self.states = states.clone();
            }
            PhysicianEvent::PhysicianDeactivated {} => self.active = false,
            PhysicianEvent::PhysicianReactivated {} => self.active = true,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npi_with_a_valid_check_digit_is_accepted() {
        // The example NPI from the CMS check-digit specification.
        assert!(Npi::parse("1234567893").is_ok());
        assert_eq!(Npi::check_digit("123456789"), Some(3));
    }

    #[test]
    fn npi_with_a_wrong_check_digit_or_shape_is_refused() {
        assert!(Npi::parse("1234567890").is_err());
        assert!(Npi::parse("123456789").is_err());
        assert!(Npi::parse("12345678a3").is_err());
        assert!(Npi::parse("").is_err());
    }
}
