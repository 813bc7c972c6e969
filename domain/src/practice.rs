//! Practices, their locations, and which physicians belong to them.
//!
//! Facts (seed 003, "Practice Management Workflow"; `DOMAIN.md`, "People and organisation"): a
//! practice has a unique name, a kind (solo, group, hospital, clinic), a primary specialty, a
//! primary address, a phone and an e-mail, an NPI and a tax id (EIN); it may have further
//! locations; it is active or inactive; physicians are assigned to at most one practice at a
//! time, individually or in bulk, and a bulk assignment reports per physician instead of failing.
//!
//! **Name uniqueness.** A practice's stream id is a UUID v5 of its normalised name
//! ([`Practice::stream_id`], [`name_key`]), so two creations with one name collide on the stream
//! however the requests race. For the same reason a practice cannot be *renamed*: the new name
//! would not own a stream, so nothing would stop a second practice taking it. An update may
//! change the name's spelling only where the normalised key stays the same (case, spacing);
//! anything else is refused with [`PracticeError::Rename`]. The NPI's uniqueness across
//! practices (which seed 003 also asks for) cannot be decided here: one stream has one natural
//! key. A projection has to report it.
//!
//! **Membership is decided on both sides.** The practice's stream records who is assigned to it
//! ([`PracticeEvent::PhysicianAssignedToPractice`]), and a second, small aggregate per
//! physician, [`PracticeMembership`], records which practice the physician is in, so that "at
//! most one practice at a time" is decided on one stream. The command layer decides both and
//! appends both streams' events in one transaction, each at the version it decided on (the
//! pattern `commands` uses for a renewal and its credential). A transfer touches three streams:
//! the membership (one [`MembershipCommand::Transfer`] giving a leave and a join), the old
//! practice (unassign) and the new one (assign). [`assignment_outcome`] and
//! [`unassignment_outcome`] give a bulk request its per-physician result from the same rules.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::jurisdiction::Jurisdiction;
use crate::physician::Npi;
use crate::Aggregate;

/// Why a value (an EIN, phone number or ZIP code) was refused. The message starts with the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field} {value:?} is not valid: {reason}")]
pub struct InvalidValue {
    pub field: &'static str,
    /// The offending input, cut to 20 characters.
    pub value: String,
    pub reason: &'static str,
}

fn invalid(field: &'static str, value: &str, reason: &'static str) -> InvalidValue {
    InvalidValue {
        field,
        value: value.chars().take(20).collect(),
        reason,
    }
}

// ---------------------------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------------------------

/// An Employer Identification Number (the practice's tax id): nine digits, written `12-3456789`.
/// Accepted as `12-3456789` or `123456789`. The IRS prefix list is not checked: it changes, and
/// a wrong prefix is a typo a person catches, not a rule this system owns.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Ein(String);

impl Ein {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let v = value.trim();
        let digits: String = match v.split_once('-') {
            Some((prefix, rest)) if prefix.len() == 2 => format!("{prefix}{rest}"),
            Some(_) => return Err(invalid("ein", value, "write it as 12-3456789 or 123456789")),
            None => v.to_owned(),
        };
        if digits.len() != 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid("ein", value, "write it as 12-3456789 or 123456789"));
        }
        Ok(Ein(format!("{}-{}", &digits[..2], &digits[2..])))
    }

    /// `12-3456789`.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A US phone number: ten digits, stored as digits only. Accepted with the usual punctuation
/// (`(512) 555-0100`, `512.555.0100`, `512-555-0100`) and an optional country code `1` or `+1`.
/// The NANP's finer rules (area codes and exchanges not starting with 0 or 1) are not checked,
/// so that made-up numbers in test data stay usable; length and characters are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Phone(String);

impl Phone {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let v = value.trim();
        let (plus, rest) = match v.strip_prefix('+') {
            Some(rest) => (true, rest),
            None => (false, v),
        };
        if !rest
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '.' | '(' | ')'))
        {
            return Err(invalid(
                "phone",
                value,
                "use digits and ( ) - . spaces only, with an optional leading +1",
            ));
        }
        let digits: String = rest.chars().filter(char::is_ascii_digit).collect();
        let national = match (plus, digits.len()) {
            (false, 10) => digits.as_str(),
            (_, 11) if digits.starts_with('1') => &digits[1..],
            _ => {
                return Err(invalid(
                    "phone",
                    value,
                    "give a 10-digit US number (optionally after +1)",
                ))
            }
        };
        Ok(Phone(national.to_owned()))
    }

    /// The ten digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `(512) 555-0100`.
    pub fn formatted(&self) -> String {
        format!("({}) {}-{}", &self.0[..3], &self.0[3..6], &self.0[6..])
    }
}

/// A US ZIP code: five digits, or ZIP+4 (`12345-6789`, also accepted as nine digits).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ZipCode(String);

impl ZipCode {
    pub fn parse(value: &str) -> Result<Self, InvalidValue> {
        let v = value.trim();
        let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
        let zip = match v.split_once('-') {
            None if v.len() == 5 && all_digits(v) => v.to_owned(),
            None if v.len() == 9 && all_digits(v) => format!("{}-{}", &v[..5], &v[5..]),
            Some((five, four))
                if five.len() == 5 && four.len() == 4 && all_digits(five) && all_digits(four) =>
            {
                v.to_owned()
            }
            _ => return Err(invalid("zip", value, "give 5 digits or ZIP+4 (12345-6789)")),
        };
        Ok(ZipCode(zip))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl TryFrom<String> for $name {
            type Error = InvalidValue;

            fn try_from(value: String) -> Result<Self, Self::Error> {
                $name::parse(&value)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> Self {
                v.0
            }
        }
    };
}
string_newtype!(Ein);
string_newtype!(Phone);
string_newtype!(ZipCode);

/// What kind of practice (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PracticeKind {
    Solo,
    Group,
    Hospital,
    Clinic,
}

impl PracticeKind {
    pub const ALL: [PracticeKind; 4] = [
        PracticeKind::Solo,
        PracticeKind::Group,
        PracticeKind::Hospital,
        PracticeKind::Clinic,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PracticeKind::Solo => "solo",
            PracticeKind::Group => "group",
            PracticeKind::Hospital => "hospital",
            PracticeKind::Clinic => "clinic",
        }
    }
}

impl fmt::Display for PracticeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A US street address. State and ZIP are checked when parsed; street and city when decided.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Address {
    pub street: String,
    pub city: String,
    pub state: Jurisdiction,
    pub zip: ZipCode,
}

impl Address {
    fn normalized(&self) -> Address {
        Address {
            street: collapse_spaces(&self.street),
            city: collapse_spaces(&self.city),
            state: self.state,
            zip: self.zip.clone(),
        }
    }
}

/// Checks street and city; `fields` names them in errors (`address.street` / `location.address.street`).
fn check_address(address: &Address, fields: [&'static str; 2]) -> Result<(), PracticeError> {
    let [street, city] = fields;
    check_text(street, &address.street, UP_TO_200)?;
    check_text(city, &address.city, UP_TO_100)
}

/// A length limit on a text and how the refusal says it.
type Limit = (usize, &'static str);
const UP_TO_100: Limit = (100, "give 1 to 100 characters");
const UP_TO_200: Limit = (200, "give 1 to 200 characters");

fn check_text(field: &'static str, value: &str, (max, reason): Limit) -> Result<(), PracticeError> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return Err(PracticeError::InvalidField { field, reason });
    }
    Ok(())
}

/// Trims and collapses runs of whitespace into one space.
fn collapse_spaces(value: &str) -> String {
    value.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The key a practice name is unique by: trimmed, lower-cased, runs of whitespace collapsed to
/// one space. (No Unicode normalisation beyond lower-casing: the crate carries no tables for it.)
pub fn name_key(name: &str) -> String {
    collapse_spaces(&name.to_lowercase())
}

// ---------------------------------------------------------------------------------------------
// Practice
// ---------------------------------------------------------------------------------------------

/// A practice's details as submitted. The typed fields (NPI, EIN, phone, state, ZIP) are checked
/// when parsed; name, specialty, street, city and e-mail when decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PracticeDetails {
    pub name: String,
    pub kind: PracticeKind,
    /// The primary specialty.
    pub specialty: String,
    /// The primary address.
    pub address: Address,
    pub phone: Phone,
    pub email: String,
    /// The practice's (organisational) NPI.
    pub npi: Npi,
    /// The tax id.
    pub ein: Ein,
}

impl PracticeDetails {
    fn check(&self) -> Result<(), PracticeError> {
        check_text("name", &self.name, UP_TO_200)?;
        check_text("specialty", &self.specialty, UP_TO_100)?;
        check_address(&self.address, ["address.street", "address.city"])?;
        if !crate::contact::plausible_email(self.email.trim()) {
            return Err(PracticeError::InvalidField {
                field: "email",
                reason: "not an e-mail address",
            });
        }
        Ok(())
    }

    /// Trimmed and whitespace-collapsed texts, lower-cased e-mail.
    fn normalized(&self) -> PracticeDetails {
        PracticeDetails {
            name: collapse_spaces(&self.name),
            kind: self.kind,
            specialty: collapse_spaces(&self.specialty),
            address: self.address.normalized(),
            phone: self.phone.clone(),
            email: self.email.trim().to_lowercase(),
            npi: self.npi.clone(),
            ein: self.ein.clone(),
        }
    }
}

/// A further location of a practice (secondary location, satellite office, ...). The primary
/// address lives in the details, not here.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PracticeLocation {
    pub name: String,
    pub address: Address,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PracticeCommand {
    Create {
        details: PracticeDetails,
    },
    /// Replaces the details. The name may change only in spelling (same [`name_key`]).
    /// Allowed on an inactive practice, as are location changes: only assignment needs an
    /// active one.
    Update {
        details: PracticeDetails,
    },
    /// Refused while physicians are assigned: an inactive practice has none.
    Deactivate,
    Reactivate,
    /// `location_id` is chosen by the caller; the name is unique within the practice.
    AddLocation {
        location_id: Uuid,
        name: String,
        address: Address,
    },
    RemoveLocation {
        location_id: Uuid,
    },
    /// The practice's side of an assignment; the physician's side is [`MembershipCommand::Join`].
    AssignPhysician {
        physician_id: Uuid,
    },
    /// The practice's side of an unassignment; the physician's side is [`MembershipCommand::Leave`].
    UnassignPhysician {
        physician_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum PracticeEvent {
    PracticeCreated {
        name: String,
        kind: PracticeKind,
        specialty: String,
        address: Address,
        phone: Phone,
        email: String,
        npi: Npi,
        ein: Ein,
    },
    PracticeUpdated {
        name: String,
        kind: PracticeKind,
        specialty: String,
        address: Address,
        phone: Phone,
        email: String,
        npi: Npi,
        ein: Ein,
    },
    PracticeDeactivated {},
    PracticeReactivated {},
    PracticeLocationAdded {
        location_id: Uuid,
        name: String,
        address: Address,
    },
    PracticeLocationRemoved {
        location_id: Uuid,
    },
    PhysicianAssignedToPractice {
        physician_id: Uuid,
    },
    PhysicianUnassignedFromPractice {
        physician_id: Uuid,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PracticeError {
    #[error("no practice with this id")]
    NotFound,
    #[error("a practice named {name:?} already exists")]
    NameTaken { name: String },
    #[error("{field}: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error(
        "name: a practice cannot be renamed from {current:?} to {requested:?}; \
         only case and spacing may change (the name is the practice's identity)"
    )]
    Rename { current: String, requested: String },
    #[error("nothing to change: the details are the same")]
    Unchanged,
    #[error("the practice is inactive")]
    Inactive,
    #[error("the practice is already active")]
    AlreadyActive,
    #[error(
        "{count} physicians are still assigned to the practice; unassign or transfer them first"
    )]
    PhysiciansStillAssigned { count: usize },
    #[error("location_id: location {location_id} already exists")]
    LocationExists { location_id: Uuid },
    #[error("location.name: the practice already has a location named {name:?}")]
    LocationNameTaken { name: String },
    #[error("location_id: no location {location_id} in this practice")]
    UnknownLocation { location_id: Uuid },
    #[error("physician_id: physician {physician_id} is already assigned to this practice")]
    AlreadyAssigned { physician_id: Uuid },
    #[error("physician_id: physician {physician_id} is not assigned to this practice")]
    NotAssigned { physician_id: Uuid },
}

impl crate::refusal::Refusal for PracticeError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        use PracticeError as P;
        match self {
            P::NotFound | P::UnknownLocation { .. } => K::NotFound,
            P::InvalidField { .. } | P::Rename { .. } => K::Invalid,
            P::NameTaken { .. }
            | P::Unchanged
            | P::Inactive
            | P::AlreadyActive
            | P::PhysiciansStillAssigned { .. }
            | P::LocationExists { .. }
            | P::LocationNameTaken { .. }
            | P::AlreadyAssigned { .. }
            | P::NotAssigned { .. } => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use PracticeError as P;
        match self {
            P::NotFound => "practice_not_found",
            P::NameTaken { .. } => "practice_name_taken",
            P::InvalidField { .. } => "invalid_field",
            P::Rename { .. } => "rename_not_allowed",
            P::Unchanged => "unchanged",
            P::Inactive => "practice_inactive",
            P::AlreadyActive => "practice_state",
            P::PhysiciansStillAssigned { .. } => "physicians_still_assigned",
            P::LocationExists { .. } | P::LocationNameTaken { .. } => "location_exists",
            P::UnknownLocation { .. } => "location_not_found",
            P::AlreadyAssigned { .. } => "already_assigned",
            P::NotAssigned { .. } => "not_assigned",
        }
    }
}

/// A practice's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Practice {
    /// `None` until created.
    pub details: Option<PracticeDetails>,
    pub active: bool,
    pub locations: BTreeMap<Uuid, PracticeLocation>,
    /// The physicians assigned to it.
    pub physicians: BTreeSet<Uuid>,
}

/// Namespace of practice stream ids (UUID v5 of the name key).
const PRACTICE_NAMESPACE: Uuid = Uuid::from_u128(0x5e2d_91a4_0c7b_4f3e_8a61_b2d9_47c0_e813);

impl Practice {
    /// The stream id of the practice named `name` (any spelling with the same [`name_key`]).
    pub fn stream_id(name: &str) -> Uuid {
        Uuid::new_v5(&PRACTICE_NAMESPACE, name_key(name).as_bytes())
    }

    pub fn exists(&self) -> bool {
        self.details.is_some()
    }

    /// How many physicians are assigned.
    pub fn physician_count(&self) -> usize {
        self.physicians.len()
    }
}

impl Aggregate for Practice {
    const STREAM_TYPE: &'static str = "practice";
    type Command = PracticeCommand;
    type Event = PracticeEvent;
    type Error = PracticeError;

    fn decide(
        &self,
        command: &PracticeCommand,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<PracticeEvent>, PracticeError> {
        use PracticeCommand as C;
        use PracticeEvent as E;
        if let C::Create { details } = command {
            if let Some(current) = &self.details {
                return Err(PracticeError::NameTaken {
                    name: current.name.clone(),
                });
            }
            details.check()?;
            let d = details.normalized();
            return Ok(vec![E::PracticeCreated {
                name: d.name,
                kind: d.kind,
                specialty: d.specialty,
                address: d.address,
                phone: d.phone,
                email: d.email,
                npi: d.npi,
                ein: d.ein,
            }]);
        }
        let Some(current) = &self.details else {
            return Err(PracticeError::NotFound);
        };
        match command {
            C::Create { .. } => Err(PracticeError::NameTaken {
                name: current.name.clone(),
            }),
            C::Update { details } => {
                details.check()?;
                let d = details.normalized();
                if name_key(&d.name) != name_key(&current.name) {
                    return Err(PracticeError::Rename {
                        current: current.name.clone(),
                        requested: d.name,
                    });
                }
                if d == *current {
                    return Err(PracticeError::Unchanged);
                }
                Ok(vec![E::PracticeUpdated {
                    name: d.name,
                    kind: d.kind,
                    specialty: d.specialty,
                    address: d.address,
                    phone: d.phone,
                    email: d.email,
                    npi: d.npi,
                    ein: d.ein,
                }])
            }
            C::Deactivate if !self.active => Err(PracticeError::Inactive),
            C::Deactivate if !self.physicians.is_empty() => {
                Err(PracticeError::PhysiciansStillAssigned {
                    count: self.physicians.len(),
                })
            }
            C::Deactivate => Ok(vec![E::PracticeDeactivated {}]),
            C::Reactivate if self.active => Err(PracticeError::AlreadyActive),
            C::Reactivate => Ok(vec![E::PracticeReactivated {}]),
            C::AddLocation {
                location_id,
                name,
                address,
            } => {
                check_text("location.name", name, UP_TO_200)?;
                check_address(
                    address,
                    ["location.address.street", "location.address.city"],
                )?;
                if self.locations.contains_key(location_id) {
                    return Err(PracticeError::LocationExists {
                        location_id: *location_id,
                    });
                }
                let name = collapse_spaces(name);
                if self
                    .locations
                    .values()
                    .any(|l| name_key(&l.name) == name_key(&name))
                {
                    return Err(PracticeError::LocationNameTaken { name });
                }
                Ok(vec![E::PracticeLocationAdded {
                    location_id: *location_id,
                    name,
                    address: address.normalized(),
                }])
            }
            C::RemoveLocation { location_id } if !self.locations.contains_key(location_id) => {
                Err(PracticeError::UnknownLocation {
                    location_id: *location_id,
                })
            }
            C::RemoveLocation { location_id } => Ok(vec![E::PracticeLocationRemoved {
                location_id: *location_id,
            }]),
            C::AssignPhysician { .. } if !self.active => Err(PracticeError::Inactive),
            C::AssignPhysician { physician_id } if self.physicians.contains(physician_id) => {
                Err(PracticeError::AlreadyAssigned {
                    physician_id: *physician_id,
                })
            }
            C::AssignPhysician { physician_id } => Ok(vec![E::PhysicianAssignedToPractice {
                physician_id: *physician_id,
            }]),
            C::UnassignPhysician { physician_id } if !self.physicians.contains(physician_id) => {
                Err(PracticeError::NotAssigned {
                    physician_id: *physician_id,
                })
            }
            C::UnassignPhysician { physician_id } => Ok(vec![E::PhysicianUnassignedFromPractice {
                physician_id: *physician_id,
            }]),
        }
    }

    fn evolve(mut self, event: &PracticeEvent) -> Self {
        use PracticeEvent as E;
        match event {
            E::PracticeCreated {
                name,
                kind,
                specialty,
                address,
                phone,
                email,
                npi,
                ein,
            }
            | E::PracticeUpdated {
                name,
                kind,
                specialty,
                address,
                phone,
                email,
                npi,
                ein,
            } => {
                if matches!(event, E::PracticeCreated { .. }) {
                    self.active = true;
                }
                self.details = Some(PracticeDetails {
                    name: name.clone(),
                    kind: *kind,
                    specialty: specialty.clone(),
                    address: address.clone(),
                    phone: phone.clone(),
                    email: email.clone(),
                    npi: npi.clone(),
                    ein: ein.clone(),
                });
            }
            E::PracticeDeactivated {} => self.active = false,
            E::PracticeReactivated {} => self.active = true,
            E::PracticeLocationAdded {
                location_id,
                name,
                address,
            } => {
                self.locations.insert(
                    *location_id,
                    PracticeLocation {
                        name: name.clone(),
                        address: address.clone(),
                    },
                );
            }
            E::PracticeLocationRemoved { location_id } => {
                self.locations.remove(location_id);
            }
            E::PhysicianAssignedToPractice { physician_id } => {
                self.physicians.insert(*physician_id);
            }
            E::PhysicianUnassignedFromPractice { physician_id } => {
                self.physicians.remove(physician_id);
            }
        }
        self
    }
}

// ---------------------------------------------------------------------------------------------
// Membership: the physician's side
// ---------------------------------------------------------------------------------------------

/// Which practice one physician is in: the physician's side of "at most one practice at a
/// time". One stream per physician, id [`PracticeMembership::stream_id`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PracticeMembership {
    /// The practice the physician is in, if any.
    pub practice_id: Option<Uuid>,
}

/// Namespace of membership stream ids (UUID v5 of the physician id).
const MEMBERSHIP_NAMESPACE: Uuid = Uuid::from_u128(0x9b46_2f0e_d3c8_4a17_b5e2_6c0f_81a3_d954);

impl PracticeMembership {
    /// The stream id of a physician's membership. Derived from, never equal to, the physician's
    /// own stream id: stream ids are unique across stream types.
    pub fn stream_id(physician_id: Uuid) -> Uuid {
        Uuid::new_v5(&MEMBERSHIP_NAMESPACE, physician_id.as_bytes())
    }
}

/// The existence and standing of the physician arrive in the command, looked up before deciding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembershipCommand {
    Join {
        practice_id: Uuid,
        physician_exists: bool,
        physician_active: bool,
    },
    /// Allowed whatever the physician's standing: an inactive physician can always be removed.
    Leave { practice_id: Uuid },
    /// Leaves `from` and joins `to` in one decision (two events). Like a join, it needs an active
    /// physician; the physician exists, having joined `from`.
    Transfer {
        from: Uuid,
        to: Uuid,
        physician_active: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum MembershipEvent {
    PhysicianJoinedPractice { practice_id: Uuid },
    PhysicianLeftPractice { practice_id: Uuid },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MembershipError {
    #[error("physician_id: no physician with this id")]
    UnknownPhysician,
    #[error("physician_id: the physician is inactive")]
    PhysicianInactive,
    #[error(
        "practice_id: the physician is already in practice {practice_id}; \
         unassign or transfer them first"
    )]
    AlreadyInPractice { practice_id: Uuid },
    #[error("practice_id: the physician is already in this practice ({practice_id})")]
    AlreadyInThisPractice { practice_id: Uuid },
    #[error("practice_id: the physician is not in practice {practice_id} (current practice: {})",
        current.map_or_else(|| "none".to_owned(), |c| c.to_string()))]
    NotInPractice {
        practice_id: Uuid,
        current: Option<Uuid>,
    },
    #[error(
        "to: the physician is already in practice {practice_id}; a transfer needs two practices"
    )]
    SamePractice { practice_id: Uuid },
}

impl crate::refusal::Refusal for MembershipError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        match self {
            MembershipError::UnknownPhysician => crate::refusal::ErrorKind::Invalid,
            _ => crate::refusal::ErrorKind::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use MembershipError as M;
        match self {
            M::UnknownPhysician => "unknown_physician",
            M::PhysicianInactive => "physician_inactive",
            M::AlreadyInPractice { .. } => "already_assigned_elsewhere",
            M::AlreadyInThisPractice { .. } => "already_in_this_practice",
            M::NotInPractice { .. } => "not_in_this_practice",
            M::SamePractice { .. } => "same_practice",
        }
    }
}

/// A physician's result in a (bulk) assignment to a practice. Only `Assigned` changes anything;
/// the others are reported to the caller instead of failing the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AssignmentOutcome {
    Assigned,
    AlreadyAssignedElsewhere { practice_id: Uuid },
    AlreadyInThisPractice,
    Inactive,
    Unknown,
}

/// What assigning the physician whose membership is `membership` to `practice_id` does. Checks
/// in the order seed 003 lists them: the physician exists, is active, and has no practice yet.
/// [`MembershipCommand::Join`] decides by this very function, so a bulk report and a single
/// assignment never disagree.
pub fn assignment_outcome(
    membership: &PracticeMembership,
    practice_id: Uuid,
    physician_exists: bool,
    physician_active: bool,
) -> AssignmentOutcome {
    if !physician_exists {
        AssignmentOutcome::Unknown
    } else if !physician_active {
        AssignmentOutcome::Inactive
    } else {
        match membership.practice_id {
            Some(current) if current == practice_id => AssignmentOutcome::AlreadyInThisPractice,
            Some(current) => AssignmentOutcome::AlreadyAssignedElsewhere {
                practice_id: current,
            },
            None => AssignmentOutcome::Assigned,
        }
    }
}

/// A physician's result in a (bulk) unassignment from a practice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum UnassignmentOutcome {
    Unassigned,
    NotInThisPractice,
    Unknown,
}

/// What unassigning the physician from `practice_id` does. The physician's standing does not
/// matter: an inactive physician can always be removed.
pub fn unassignment_outcome(
    membership: &PracticeMembership,
    practice_id: Uuid,
    physician_exists: bool,
) -> UnassignmentOutcome {
    if !physician_exists {
        UnassignmentOutcome::Unknown
    } else if membership.practice_id == Some(practice_id) {
        UnassignmentOutcome::Unassigned
    } else {
        UnassignmentOutcome::NotInThisPractice
    }
}

impl Aggregate for PracticeMembership {
    const STREAM_TYPE: &'static str = "practice_membership";
    type Command = MembershipCommand;
    type Event = MembershipEvent;
    type Error = MembershipError;

    fn decide(
        &self,
        command: &MembershipCommand,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<MembershipEvent>, MembershipError> {
        use MembershipCommand as C;
        use MembershipEvent as E;
        match command {
            C::Join {
                practice_id,
                physician_exists,
                physician_active,
            } => match assignment_outcome(self, *practice_id, *physician_exists, *physician_active)
            {
                AssignmentOutcome::Assigned => Ok(vec![E::PhysicianJoinedPractice {
                    practice_id: *practice_id,
                }]),
                AssignmentOutcome::Unknown => Err(MembershipError::UnknownPhysician),
                AssignmentOutcome::Inactive => Err(MembershipError::PhysicianInactive),
                AssignmentOutcome::AlreadyInThisPractice => {
                    Err(MembershipError::AlreadyInThisPractice {
                        practice_id: *practice_id,
                    })
                }
                AssignmentOutcome::AlreadyAssignedElsewhere { practice_id } => {
                    Err(MembershipError::AlreadyInPractice { practice_id })
                }
            },
            C::Leave { practice_id } if self.practice_id != Some(*practice_id) => {
                Err(MembershipError::NotInPractice {
                    practice_id: *practice_id,
                    current: self.practice_id,
                })
            }
            C::Leave { practice_id } => Ok(vec![E::PhysicianLeftPractice {
                practice_id: *practice_id,
            }]),
            C::Transfer { from, .. } if self.practice_id != Some(*from) => {
                Err(MembershipError::NotInPractice {
                    practice_id: *from,
                    current: self.practice_id,
                })
            }
            C::Transfer { from, to, .. } if from == to => {
                Err(MembershipError::SamePractice { practice_id: *to })
            }
            C::Transfer {
                physician_active: false,
                ..
            } => Err(MembershipError::PhysicianInactive),
            C::Transfer { from, to, .. } => Ok(vec![
                E::PhysicianLeftPractice { practice_id: *from },
                E::PhysicianJoinedPractice { practice_id: *to },
            ]),
        }
    }

    fn evolve(mut self, event: &MembershipEvent) -> Self {
        match event {
            MembershipEvent::PhysicianJoinedPractice { practice_id } => {
                self.practice_id = Some(*practice_id)
            }
            MembershipEvent::PhysicianLeftPractice { practice_id } => {
                if self.practice_id == Some(*practice_id) {
                    self.practice_id = None;
                }
            }
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_keys_ignore_case_and_spacing() {
        assert_eq!(
            name_key("  Austin   Family\tClinic "),
            "austin family clinic"
        );
        assert_eq!(name_key("ÉCOLE Clinic"), "école clinic");
    }

    #[test]
    fn phone_numbers_with_a_country_code_keep_ten_digits() {
        assert_eq!(
            Phone::parse("+1 (512) 555-0100").map(|p| p.to_string()),
            Ok("5125550100".into())
        );
        assert_eq!(
            Phone::parse("15125550100").map(|p| p.formatted()),
            Ok("(512) 555-0100".into())
        );
        assert!(Phone::parse("+44 20 7946 0958").is_err());
        assert!(Phone::parse("+5125550100").is_err());
    }
}
