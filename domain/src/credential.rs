//! Credentials: a physician's licence, DEA registration or state CSR, its expiry, and which
//! renewal (at most one) is open for it.
//!
//! The credential's stream is where "at most one open renewal" is decided: opening a renewal
//! appends [`CredentialEvent::RenewalOpened`] here with the version the decision was made on,
//! in the same transaction as the renewal's first event. Two racing initiations cannot both
//! append at that version, and the loser, deciding again, finds the renewal open.

use std::fmt;

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jurisdiction::Jurisdiction;
use crate::Aggregate;

/// What kind of credential: see `DOMAIN.md`, "Credentials and renewals".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CredentialKind {
    /// State medical licence.
    License,
    /// DEA registration (3-year cycle).
    Dea,
    /// State controlled-substance registration (annual or biennial by state).
    Csr,
}

impl CredentialKind {
    pub const ALL: [CredentialKind; 3] = [
        CredentialKind::License,
        CredentialKind::Dea,
        CredentialKind::Csr,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::License => "license",
            CredentialKind::Dea => "dea",
            CredentialKind::Csr => "csr",
        }
    }

    /// The expiry a renewal moves a credential to when the approval does not say: the next
    /// cycle. Licences are taken to run two years (the seeds give no licence cycle).
    pub fn next_expiry(self, jurisdiction: Jurisdiction, current: NaiveDate) -> NaiveDate {
        let months = match self {
            CredentialKind::License => 24,
            CredentialKind::Dea => 36,
            CredentialKind::Csr if jurisdiction.csr_is_annual() => 12,
            CredentialKind::Csr => 24,
        };
        current
            .checked_add_months(Months::new(months))
            .unwrap_or(current)
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a renewal left the credential's "open renewal" slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalOutcome {
    Approved,
    Expired,
    Cancelled,
}

/// What the command needs to know about the physician, looked up before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhysicianStanding {
    pub physician_id: Uuid,
    pub exists: bool,
    pub active: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CredentialCommand {
    Register {
        physician: PhysicianStanding,
        kind: CredentialKind,
        jurisdiction: Jurisdiction,
        number: String,
        expiry: NaiveDate,
    },
    /// Fixes a wrongly entered expiry (a renewal records a new one through `RecordRenewal`).
    CorrectExpiry {
        expiry: NaiveDate,
    },
    Revoke {
        reason: String,
    },
    OpenRenewal {
        renewal_id: Uuid,
    },
    CloseRenewal {
        renewal_id: Uuid,
        outcome: RenewalOutcome,
    },
    /// An approved renewal's new expiry; closes the renewal.
    RecordRenewal {
        renewal_id: Uuid,
        new_expiry: NaiveDate,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum CredentialEvent {
    CredentialRegistered {
        physician_id: Uuid,
        kind: CredentialKind,
        jurisdiction: Jurisdiction,
        number: String,
        expiry: NaiveDate,
    },
    CredentialExpiryCorrected {
        previous_expiry: NaiveDate,
        expiry: NaiveDate,
    },
    CredentialRevoked {
        reason: String,
        at: DateTime<Utc>,
    },
    RenewalOpened {
        renewal_id: Uuid,
    },
    RenewalClosed {
        renewal_id: Uuid,
        outcome: RenewalOutcome,
    },
    CredentialRenewed {
        renewal_id: Uuid,
        previous_expiry: NaiveDate,
        expiry: NaiveDate,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    #[error("no credential with this id")]
    NotFound,
    #[error("this credential is already registered")]
    AlreadyRegistered,
    #[error("physician_id: no physician with this id")]
    UnknownPhysician,
    #[error("physician_id: the physician is inactive")]
    PhysicianInactive,
    #[error("number: give 1 to 64 letters, digits or dashes")]
    InvalidNumber,
    #[error("renewal {renewal_id} is already open for this credential")]
    RenewalAlreadyOpen { renewal_id: Uuid },
    #[error("the credential was revoked; it cannot be renewed or changed")]
    Revoked,
    #[error("the credential expired on {expiry}; a renewal can no longer be opened")]
    AlreadyExpired { expiry: NaiveDate },
    #[error("renewal {renewal_id} is not the credential's open renewal")]
    NotTheOpenRenewal { renewal_id: Uuid },
    #[error("new_expiry: {new_expiry} is not after the current expiry {expiry}")]
    NewExpiryNotLater {
        expiry: NaiveDate,
        new_expiry: NaiveDate,
    },
    #[error("expiry: the credential already expires on {expiry}")]
    SameExpiry { expiry: NaiveDate },
    #[error("renewal {renewal_id} is open for this credential; close or cancel it before revoking or correcting the expiry")]
    RenewalStillOpen { renewal_id: Uuid },
    #[error("reason: give a reason")]
    MissingReason,
    #[error("{field}: {date} is not a plausible date (1900-01-01 to 2199-12-31)")]
    ImplausibleDate {
        field: &'static str,
        date: NaiveDate,
    },
}

impl crate::refusal::Refusal for CredentialError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        use CredentialError as C;
        match self {
            C::NotFound => K::NotFound,
            C::UnknownPhysician
            | C::InvalidNumber
            | C::MissingReason
            | C::NewExpiryNotLater { .. }
            | C::ImplausibleDate { .. } => K::Invalid,
            C::AlreadyRegistered
            | C::PhysicianInactive
            | C::RenewalAlreadyOpen { .. }
            | C::Revoked
            | C::AlreadyExpired { .. }
            | C::NotTheOpenRenewal { .. }
            | C::SameExpiry { .. }
            | C::RenewalStillOpen { .. } => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use CredentialError as C;
        match self {
            C::NotFound => "credential_not_found",
            C::AlreadyRegistered => "credential_exists",
            C::UnknownPhysician => "unknown_physician",
            C::PhysicianInactive => "physician_inactive",
            C::InvalidNumber | C::MissingReason => "invalid_field",
            C::RenewalAlreadyOpen { .. } => "renewal_already_open",
            C::Revoked => "credential_revoked",
            C::AlreadyExpired { .. } => "credential_expired",
            C::NotTheOpenRenewal { .. } => "not_the_open_renewal",
            C::NewExpiryNotLater { .. } => "invalid_new_expiry",
            C::SameExpiry { .. } => "unchanged",
            C::RenewalStillOpen { .. } => "renewal_still_open",
            C::ImplausibleDate { .. } => "invalid_date",
        }
    }

    /// The open renewal a client can go to instead.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            CredentialError::RenewalAlreadyOpen { renewal_id }
            | CredentialError::RenewalStillOpen { renewal_id } => {
                crate::refusal::fields(serde_json::json!({ "renewal_id": renewal_id }))
            }
            _ => serde_json::Map::new(),
        }
    }
}

/// A credential's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Credential {
    pub registered: bool,
    pub physician_id: Uuid,
    pub kind: Option<CredentialKind>,
    pub jurisdiction: Option<Jurisdiction>,
    pub number: String,
    pub expiry: Option<NaiveDate>,
    pub revoked: bool,
    /// The renewal currently open for it, if any.
    pub open_renewal: Option<Uuid>,
}

/// Namespace of credential stream ids (UUID v5 of kind, jurisdiction and number).
const CREDENTIAL_NAMESPACE: Uuid = Uuid::from_u128(0x3d0b_77c2_41f6_4c55_9e1a_0f6b_2c8d_4e71);

impl Credential {
    /// The stream id of the credential with this kind, jurisdiction and number: one credential
    /// per number, however registrations race.
    pub fn stream_id(kind: CredentialKind, jurisdiction: Jurisdiction, number: &str) -> Uuid {
        let key = format!(
            "{kind}:{jurisdiction}:{}",
            number.trim().to_ascii_uppercase()
        );
        Uuid::new_v5(&CREDENTIAL_NAMESPACE, key.as_bytes())
    }

    /// Expired on `today`: the expiry date is the last valid day.
    pub fn is_expired_on(&self, today: NaiveDate) -> bool {
        self.expiry.is_some_and(|e| today > e)
    }
}

/// Dates a credential can sensibly carry; anything else is a typing error (and PostgreSQL's
/// `date` could not even hold some of what chrono parses).
pub fn plausible_date(field: &'static str, date: NaiveDate) -> Result<(), CredentialError> {
    let earliest = NaiveDate::from_ymd_opt(1900, 1, 1).unwrap_or(NaiveDate::MIN);
    let latest = NaiveDate::from_ymd_opt(2199, 12, 31).unwrap_or(NaiveDate::MAX);
    if date < earliest || date > latest {
        return Err(CredentialError::ImplausibleDate { field, date });
    }
    Ok(())
}

fn valid_number(number: &str) -> bool {
    let n = number.trim();
    !n.is_empty() && n.len() <= 64 && n.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

impl Aggregate for Credential {
    const STREAM_TYPE: &'static str = "credential";
    type Command = CredentialCommand;
    type Event = CredentialEvent;
    type Error = CredentialError;

    fn decide(
        &self,
        command: &CredentialCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<CredentialEvent>, CredentialError> {
        use CredentialCommand as C;
        use CredentialError as Err_;
        use CredentialEvent as E;
        if let C::Register {
            physician,
            kind,
            jurisdiction,
            number,
            expiry,
        } = command
        {
            if self.registered {
                return Err(Err_::AlreadyRegistered);
            }
            if !physician.exists {
                return Err(Err_::UnknownPhysician);
            }
            if !physician.active {
                return Err(Err_::PhysicianInactive);
            }
            if !valid_number(number) {
                return Err(Err_::InvalidNumber);
            }
            plausible_date("expiry", *expiry)?;
            return Ok(vec![E::CredentialRegistered {
                physician_id: physician.physician_id,
                kind: *kind,
                jurisdiction: *jurisdiction,
                number: number.trim().to_ascii_uppercase(),
                expiry: *expiry,
            }]);
        }
        let Some(expiry) = self.expiry.filter(|_| self.registered) else {
            return Err(Err_::NotFound);
        };
        match command {
            C::Register { .. } => Err(Err_::AlreadyRegistered),
            _ if self.revoked && !matches!(command, C::CloseRenewal { .. }) => Err(Err_::Revoked),
            C::CorrectExpiry { expiry: new } => {
                plausible_date("expiry", *new)?;
                // The open renewal's deadline is the old expiry: close it first.
                if let Some(renewal_id) = self.open_renewal {
                    return Err(Err_::RenewalStillOpen { renewal_id });
                }
                if *new == expiry {
                    return Err(Err_::SameExpiry { expiry });
                }
                Ok(vec![E::CredentialExpiryCorrected {
                    previous_expiry: expiry,
                    expiry: *new,
                }])
            }
            C::Revoke { reason } => {
                if reason.trim().is_empty() {
                    return Err(Err_::MissingReason);
                }
                if let Some(renewal_id) = self.open_renewal {
                    return Err(Err_::RenewalStillOpen { renewal_id });
                }
                Ok(vec![E::CredentialRevoked {
                    reason: reason.trim().to_owned(),
                    at: now,
                }])
            }
            C::OpenRenewal { renewal_id } => {
                if let Some(open) = self.open_renewal {
                    return Err(Err_::RenewalAlreadyOpen { renewal_id: open });
                }
                if self.is_expired_on(now.date_naive()) {
                    return Err(Err_::AlreadyExpired { expiry });
                }
                Ok(vec![E::RenewalOpened {
                    renewal_id: *renewal_id,
                }])
            }
            C::CloseRenewal {
                renewal_id,
                outcome,
            } => {
                if self.open_renewal != Some(*renewal_id) {
                    return Err(Err_::NotTheOpenRenewal {
                        renewal_id: *renewal_id,
                    });
                }
                Ok(vec![E::RenewalClosed {
                    renewal_id: *renewal_id,
                    outcome: *outcome,
                }])
            }
            C::RecordRenewal {
                renewal_id,
                new_expiry,
            } => {
                if self.open_renewal != Some(*renewal_id) {
                    return Err(Err_::NotTheOpenRenewal {
                        renewal_id: *renewal_id,
                    });
                }
                if *new_expiry <= expiry {
                    return Err(Err_::NewExpiryNotLater {
                        expiry,
                        new_expiry: *new_expiry,
                    });
                }
                Ok(vec![
                    E::CredentialRenewed {
                        renewal_id: *renewal_id,
                        previous_expiry: expiry,
                        expiry: *new_expiry,
                    },
                    E::RenewalClosed {
                        renewal_id: *renewal_id,
                        outcome: RenewalOutcome::Approved,
                    },
                ])
            }
        }
    }

    fn evolve(mut self, event: &CredentialEvent) -> Self {
        use CredentialEvent as E;
        match event {
            E::CredentialRegistered {
                physician_id,
                kind,
                jurisdiction,
                number,
                expiry,
            } => {
                self.registered = true;
                self.physician_id = *physician_id;
                self.kind = Some(*kind);
                self.jurisdiction = Some(*jurisdiction);
                self.number = number.clone();
                self.expiry = Some(*expiry);
            }
            E::CredentialExpiryCorrected { expiry, .. } | E::CredentialRenewed { expiry, .. } => {
                self.expiry = Some(*expiry)
            }
            E::CredentialRevoked { .. } => self.revoked = true,
            E::RenewalOpened { renewal_id } => self.open_renewal = Some(*renewal_id),
            E::RenewalClosed { renewal_id, .. } => {
                if self.open_renewal == Some(*renewal_id) {
                    self.open_renewal = None;
                }
            }
        }
        self
    }
}
