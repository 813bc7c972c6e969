//! Staff members who can be allocated work: their skills, home location, weekly availability,
//! capacity and preferences — the facts [`crate::allocation`] ranks them by (`DOMAIN.md`,
//! "Assignments and allocation"; seed 000, "Staff Allocation & Matching System").
//!
//! A staff member's stream id is chosen by the caller (there is no natural key). Allocating work
//! to a staff member is an event of the work's aggregate, not of this one; it carries an
//! [`crate::allocation::AllocationDecision`].
//!
//! Labels (skills, work kinds) are compared exactly after [`normalise_label`]; everything stored
//! here is normalised on the way in, so a caller only has to normalise what it compares with.

use std::collections::BTreeSet;
use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Aggregate;

/// Minutes in a day: the end of the last possible slot.
pub const MINUTES_PER_DAY: u16 = 24 * 60;

/// The most skills, preferred work kinds, preferred clients or availability slots one staff
/// member may list. Ranking reads them for every candidate, so they stay bounded.
pub const MAX_ENTRIES: usize = 100;

/// The longest label (skill or work kind), in characters.
pub const MAX_LABEL_CHARS: usize = 64;

/// The highest capacity a staff member may declare.
pub const MAX_WORKLOAD: u32 = 1_000;

/// Trimmed, lower-cased, runs of whitespace collapsed to one space: `" Wound  Care"` →
/// `"wound care"`.
pub fn normalise_label(label: &str) -> String {
    label
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// A day of the week, Monday first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weekday {
    Monday,
    Tuesday,
    Wednesday,
    Thursday,
    Friday,
    Saturday,
    Sunday,
}

impl From<chrono::Weekday> for Weekday {
    fn from(day: chrono::Weekday) -> Self {
        match day {
            chrono::Weekday::Mon => Weekday::Monday,
            chrono::Weekday::Tue => Weekday::Tuesday,
            chrono::Weekday::Wed => Weekday::Wednesday,
            chrono::Weekday::Thu => Weekday::Thursday,
            chrono::Weekday::Fri => Weekday::Friday,
            chrono::Weekday::Sat => Weekday::Saturday,
            chrono::Weekday::Sun => Weekday::Sunday,
        }
    }
}

/// A stretch of one weekday, `[start_minute, end_minute)` in minutes after local midnight:
/// a staff member's recurring availability, or the time a piece of work takes. The time zone is
/// the caller's (the staff member's local time); a slot never crosses midnight — split
/// overnight work into two slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "RawTimeSlot")]
pub struct TimeSlot {
    weekday: Weekday,
    start_minute: u16,
    end_minute: u16,
}

#[derive(Deserialize)]
struct RawTimeSlot {
    weekday: Weekday,
    start_minute: u16,
    end_minute: u16,
}

impl TryFrom<RawTimeSlot> for TimeSlot {
    type Error = StaffError;

    fn try_from(raw: RawTimeSlot) -> Result<Self, Self::Error> {
        TimeSlot::new(raw.weekday, raw.start_minute, raw.end_minute)
    }
}

impl TimeSlot {
    /// Refused unless `start_minute < end_minute <= 1440`.
    pub fn new(weekday: Weekday, start_minute: u16, end_minute: u16) -> Result<Self, StaffError> {
        if end_minute > MINUTES_PER_DAY {
            return Err(StaffError::InvalidField {
                field: "end_minute",
                reason: "a slot ends at minute 1440 (midnight) at the latest",
            });
        }
        if start_minute >= end_minute {
            return Err(StaffError::InvalidField {
                field: "start_minute",
                reason: "a slot starts before it ends",
            });
        }
        Ok(TimeSlot {
            weekday,
            start_minute,
            end_minute,
        })
    }

    pub fn weekday(&self) -> Weekday {
        self.weekday
    }

    pub fn start_minute(&self) -> u16 {
        self.start_minute
    }

    pub fn end_minute(&self) -> u16 {
        self.end_minute
    }

    /// Whether `other` lies wholly inside this slot.
    pub fn covers(&self, other: &TimeSlot) -> bool {
        self.weekday == other.weekday
            && self.start_minute <= other.start_minute
            && other.end_minute <= self.end_minute
    }
}

impl fmt::Display for TimeSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |m: u16| format!("{:02}:{:02}", m / 60, m % 60);
        write!(
            f,
            "{:?} {}-{}",
            self.weekday,
            hm(self.start_minute),
            hm(self.end_minute)
        )
    }
}

/// Sorts slots and merges the ones that overlap or touch on the same weekday, so that a slot
/// covering a stretch exists whenever the slots together cover it.
pub fn merge_slots(slots: &[TimeSlot]) -> Vec<TimeSlot> {
    let mut sorted = slots.to_vec();
    sorted.sort();
    let mut merged: Vec<TimeSlot> = Vec::with_capacity(sorted.len());
    for slot in sorted {
        match merged.last_mut() {
            Some(last) if last.weekday == slot.weekday && slot.start_minute <= last.end_minute => {
                last.end_minute = last.end_minute.max(slot.end_minute);
            }
            _ => merged.push(slot),
        }
    }
    merged
}

/// A point on Earth in integer micro-degrees (1e-6°, about 0.11 m of latitude).
///
/// Integers rather than `f64`: the value is `Eq` and `Hash`, serialises and reads back exactly
/// (events are JSON), has no NaN or infinity to guard against, and its range is checked once
/// here. The distance is computed in `f64` ([`GeoPoint::distance_km`]); a micro-degree is far
/// finer than any travel distance needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawGeoPoint")]
pub struct GeoPoint {
    lat_e6: i32,
    lon_e6: i32,
}

#[derive(Deserialize)]
struct RawGeoPoint {
    lat_e6: i32,
    lon_e6: i32,
}

impl TryFrom<RawGeoPoint> for GeoPoint {
    type Error = StaffError;

    fn try_from(raw: RawGeoPoint) -> Result<Self, Self::Error> {
        GeoPoint::new(raw.lat_e6, raw.lon_e6)
    }
}

/// Mean Earth radius (IUGG), in kilometres.
pub const EARTH_RADIUS_KM: f64 = 6_371.008_8;

impl GeoPoint {
    /// Refused unless latitude is within ±90° and longitude within ±180°.
    pub fn new(lat_e6: i32, lon_e6: i32) -> Result<Self, StaffError> {
        if !(-90_000_000..=90_000_000).contains(&lat_e6) {
            return Err(StaffError::InvalidField {
                field: "lat_e6",
                reason: "latitude is within ±90 degrees (±90000000 micro-degrees)",
            });
        }
        if !(-180_000_000..=180_000_000).contains(&lon_e6) {
            return Err(StaffError::InvalidField {
                field: "lon_e6",
                reason: "longitude is within ±180 degrees (±180000000 micro-degrees)",
            });
        }
        Ok(GeoPoint { lat_e6, lon_e6 })
    }

    /// From decimal degrees, rounded to the nearest micro-degree.
    pub fn from_degrees(lat: f64, lon: f64) -> Result<Self, StaffError> {
        let micro = |d: f64| {
            let m = (d * 1e6).round();
            // Out-of-range (and NaN) values become an out-of-range integer, refused by `new`.
            if m.is_finite() && m.abs() <= 1e9 {
                m as i32
            } else {
                i32::MAX
            }
        };
        GeoPoint::new(micro(lat), micro(lon))
    }

    pub fn lat_e6(&self) -> i32 {
        self.lat_e6
    }

    pub fn lon_e6(&self) -> i32 {
        self.lon_e6
    }

    /// Latitude and longitude in radians.
    pub fn radians(&self) -> (f64, f64) {
        let r = |e6: i32| (f64::from(e6) * 1e-6).to_radians();
        (r(self.lat_e6), r(self.lon_e6))
    }

    /// Great-circle distance by the haversine formula on a sphere of [`EARTH_RADIUS_KM`] (error
    /// under 0.5 % against the ellipsoid, plenty for ranking).
    pub fn distance_km(&self, other: &GeoPoint) -> f64 {
        let (lat1, lon1) = self.radians();
        let (lat2, lon2) = other.radians();
        haversine_km(lat1, lat1.cos(), lon1, lat2, lat2.cos(), lon2)
    }
}

/// The haversine distance from precomputed radians and latitude cosines (so a ranking computes
/// the work's once).
pub(crate) fn haversine_km(
    lat1: f64,
    cos_lat1: f64,
    lon1: f64,
    lat2: f64,
    cos_lat2: f64,
    lon2: f64,
) -> f64 {
    let sin_dlat = ((lat2 - lat1) * 0.5).sin();
    let sin_dlon = ((lon2 - lon1) * 0.5).sin();
    let a = sin_dlat * sin_dlat + cos_lat1 * cos_lat2 * sin_dlon * sin_dlon;
    // Rounding can push `a` a hair above 1 for antipodal points; asin would give NaN.
    2.0 * EARTH_RADIUS_KM * a.clamp(0.0, 1.0).sqrt().asin()
}

/// What a staff member would rather do. Either kind of match makes the allocation's preference
/// factor 1.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffPreferences {
    /// Kinds of work (normalised labels, e.g. `"home visit"`).
    #[serde(default)]
    pub work_kinds: BTreeSet<String>,
    /// Clients the staff member asked to work with.
    #[serde(default)]
    pub clients: BTreeSet<Uuid>,
}

/// A staff member's profile as submitted: checked and normalised when decided.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaffProfile {
    pub name: String,
    /// Skill labels; normalised with [`normalise_label`].
    pub skills: BTreeSet<String>,
    /// Where the staff member travels from.
    pub home: GeoPoint,
    /// How many open pieces of work the staff member can carry at once (1 to [`MAX_WORKLOAD`]).
    pub max_workload: u32,
    #[serde(default)]
    pub preferences: StaffPreferences,
}

fn normalise_labels(
    field: &'static str,
    labels: &BTreeSet<String>,
) -> Result<BTreeSet<String>, StaffError> {
    if labels.len() > MAX_ENTRIES {
        return Err(StaffError::InvalidField {
            field,
            reason: "list at most 100",
        });
    }
    labels
        .iter()
        .map(|label| {
            let l = normalise_label(label);
            if l.is_empty() || l.chars().count() > MAX_LABEL_CHARS {
                Err(StaffError::InvalidField {
                    field,
                    reason: "each label has 1 to 64 characters",
                })
            } else {
                Ok(l)
            }
        })
        .collect()
}

impl StaffProfile {
    /// Checks the profile and returns it normalised (trimmed name, normalised labels).
    fn normalized(&self) -> Result<StaffProfile, StaffError> {
        let name = self.name.split_whitespace().collect::<Vec<_>>().join(" ");
        if name.is_empty() || name.chars().count() > 200 {
            return Err(StaffError::InvalidField {
                field: "name",
                reason: "give 1 to 200 characters",
            });
        }
        if !(1..=MAX_WORKLOAD).contains(&self.max_workload) {
            return Err(StaffError::InvalidField {
                field: "max_workload",
                reason: "give 1 to 1000",
            });
        }
        if self.preferences.clients.len() > MAX_ENTRIES {
            return Err(StaffError::InvalidField {
                field: "preferences.clients",
                reason: "list at most 100",
            });
        }
        Ok(StaffProfile {
            name,
            skills: normalise_labels("skills", &self.skills)?,
            home: self.home,
            max_workload: self.max_workload,
            preferences: StaffPreferences {
                work_kinds: normalise_labels(
                    "preferences.work_kinds",
                    &self.preferences.work_kinds,
                )?,
                clients: self.preferences.clients.clone(),
            },
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum StaffCommand {
    Register {
        profile: StaffProfile,
    },
    /// Replaces the profile.
    UpdateProfile {
        profile: StaffProfile,
    },
    /// Replaces the weekly availability (merged: see [`merge_slots`]). An empty list means
    /// never available.
    SetAvailability {
        slots: Vec<TimeSlot>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum StaffEvent {
    StaffMemberRegistered {
        name: String,
        skills: BTreeSet<String>,
        home: GeoPoint,
        max_workload: u32,
        preferences: StaffPreferences,
    },
    StaffMemberProfileUpdated {
        name: String,
        skills: BTreeSet<String>,
        home: GeoPoint,
        max_workload: u32,
        preferences: StaffPreferences,
    },
    StaffMemberAvailabilitySet {
        slots: Vec<TimeSlot>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StaffError {
    #[error("no staff member with this id")]
    NotFound,
    #[error("this staff member is already registered")]
    AlreadyRegistered,
    #[error("{field}: {reason}")]
    InvalidField {
        field: &'static str,
        reason: &'static str,
    },
    #[error("nothing to change: it is the same")]
    Unchanged,
}

impl crate::refusal::Refusal for StaffError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        match self {
            StaffError::NotFound => K::NotFound,
            StaffError::InvalidField { .. } => K::Invalid,
            StaffError::AlreadyRegistered | StaffError::Unchanged => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            StaffError::NotFound => "staff_not_found",
            StaffError::AlreadyRegistered => "staff_exists",
            StaffError::InvalidField { .. } => "invalid_field",
            StaffError::Unchanged => "unchanged",
        }
    }

    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            StaffError::InvalidField { field, .. } => {
                crate::refusal::fields(serde_json::json!({ "field": field }))
            }
            _ => serde_json::Map::new(),
        }
    }
}

/// A staff member's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaffMember {
    /// `None` until registered.
    pub profile: Option<StaffProfile>,
    /// Merged weekly availability, sorted.
    pub availability: Vec<TimeSlot>,
}

impl StaffMember {
    pub fn exists(&self) -> bool {
        self.profile.is_some()
    }
}

fn profile_event(p: StaffProfile, registered: bool) -> StaffEvent {
    let StaffProfile {
        name,
        skills,
        home,
        max_workload,
        preferences,
    } = p;
    if registered {
        StaffEvent::StaffMemberRegistered {
            name,
            skills,
            home,
            max_workload,
            preferences,
        }
    } else {
        StaffEvent::StaffMemberProfileUpdated {
            name,
            skills,
            home,
            max_workload,
            preferences,
        }
    }
}

impl Aggregate for StaffMember {
    const STREAM_TYPE: &'static str = "staff_member";
    type Command = StaffCommand;
    type Event = StaffEvent;
    type Error = StaffError;

    fn decide(
        &self,
        command: &StaffCommand,
        _now: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<StaffEvent>, StaffError> {
        use StaffCommand as C;
        match (command, &self.profile) {
            (C::Register { .. }, Some(_)) => Err(StaffError::AlreadyRegistered),
            (C::Register { profile }, None) => Ok(vec![profile_event(profile.normalized()?, true)]),
            (_, None) => Err(StaffError::NotFound),
            (C::UpdateProfile { profile }, Some(current)) => {
                let profile = profile.normalized()?;
                if profile == *current {
                    return Err(StaffError::Unchanged);
                }
                Ok(vec![profile_event(profile, false)])
            }
            (C::SetAvailability { slots }, Some(_)) => {
                if slots.len() > MAX_ENTRIES {
                    return Err(StaffError::InvalidField {
                        field: "slots",
                        reason: "list at most 100",
                    });
                }
                let slots = merge_slots(slots);
                if slots == self.availability {
                    return Err(StaffError::Unchanged);
                }
                Ok(vec![StaffEvent::StaffMemberAvailabilitySet { slots }])
            }
        }
    }

    fn evolve(mut self, event: &StaffEvent) -> Self {
        match event {
            StaffEvent::StaffMemberRegistered {
                name,
                skills,
                home,
                max_workload,
                preferences,
            }
            | StaffEvent::StaffMemberProfileUpdated {
                name,
                skills,
                home,
                max_workload,
                preferences,
            } => {
                self.profile = Some(StaffProfile {
                    name: name.clone(),
                    skills: skills.clone(),
                    home: *home,
                    max_workload: *max_workload,
                    preferences: preferences.clone(),
                });
            }
            StaffEvent::StaffMemberAvailabilitySet { slots } => self.availability = slots.clone(),
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot(weekday: Weekday, start: u16, end: u16) -> TimeSlot {
        TimeSlot::new(weekday, start, end).expect("a valid slot")
    }

    #[test]
    fn overlapping_and_touching_slots_merge_per_weekday() {
        let merged = merge_slots(&[
            slot(Weekday::Tuesday, 600, 700),
            slot(Weekday::Monday, 540, 720),
            slot(Weekday::Monday, 720, 780),
            slot(Weekday::Monday, 600, 660),
            slot(Weekday::Monday, 900, 960),
        ]);
        assert_eq!(
            merged,
            [
                slot(Weekday::Monday, 540, 780),
                slot(Weekday::Monday, 900, 960),
                slot(Weekday::Tuesday, 600, 700),
            ]
        );
    }

    #[test]
    fn slots_start_before_they_end_and_end_by_midnight() {
        assert!(TimeSlot::new(Weekday::Monday, 0, MINUTES_PER_DAY).is_ok());
        assert!(TimeSlot::new(Weekday::Monday, 600, 600).is_err());
        assert!(TimeSlot::new(Weekday::Monday, 0, MINUTES_PER_DAY + 1).is_err());
    }

    #[test]
    fn haversine_distance_matches_a_known_city_pair() {
        // Sydney to Melbourne, about 714 km great-circle.
        let sydney = GeoPoint::from_degrees(-33.8688, 151.2093).expect("valid");
        let melbourne = GeoPoint::from_degrees(-37.8136, 144.9631).expect("valid");
        let d = sydney.distance_km(&melbourne);
        assert!((d - 713.4).abs() < 2.0, "{d}");
        assert_eq!(sydney.distance_km(&sydney), 0.0);
        assert!(GeoPoint::from_degrees(91.0, 0.0).is_err());
        assert!(GeoPoint::from_degrees(f64::NAN, 0.0).is_err());
    }
}
