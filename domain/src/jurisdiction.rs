//! US jurisdictions (the 50 states and DC) as a validated two-letter code, and the renewal cycle
//! rules that depend on them.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Every jurisdiction a credential may be issued in.
pub const ALL: [&str; 51] = [
    "AK", "AL", "AR", "AZ", "CA", "CO", "CT", "DC", "DE", "FL", "GA", "HI", "IA", "ID", "IL", "IN",
    "KS", "KY", "LA", "MA", "MD", "ME", "MI", "MN", "MO", "MS", "MT", "NC", "ND", "NE", "NH", "NJ",
    "NM", "NV", "NY", "OH", "OK", "OR", "PA", "RI", "SC", "SD", "TN", "TX", "UT", "VA", "VT", "WA",
    "WI", "WV", "WY",
];

/// States whose controlled-substance registration (CSR) runs for one year; everywhere else it
/// runs for two (`DOMAIN.md`, "Credentials and renewals").
pub const ANNUAL_CSR: [&str; 10] = ["CA", "NY", "TX", "FL", "IL", "PA", "OH", "GA", "NC", "MI"];

/// A US state (or DC), upper-case two-letter code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Jurisdiction([u8; 2]);

/// The code is not a US state or DC.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("jurisdiction {value:?} is not a US state code (AK, AL, ..., WY, or DC)")]
pub struct UnknownJurisdiction {
    pub value: String,
}

impl Jurisdiction {
    pub fn parse(value: &str) -> Result<Self, UnknownJurisdiction> {
        let upper = value.trim().to_ascii_uppercase();
        match ALL.iter().find(|code| **code == upper) {
            Some(code) => {
                let b = code.as_bytes();
                Ok(Jurisdiction([b[0], b[1]]))
            }
            None => Err(UnknownJurisdiction {
                value: value.chars().take(16).collect(),
            }),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ever built from the ASCII codes in `ALL`.
        std::str::from_utf8(&self.0).unwrap_or("??")
    }

    /// Whether this state's CSR must be renewed every year (else every two years).
    pub fn csr_is_annual(&self) -> bool {
        ANNUAL_CSR.contains(&self.as_str())
    }
}

impl fmt::Display for Jurisdiction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for Jurisdiction {
    type Error = UnknownJurisdiction;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Jurisdiction::parse(&value)
    }
}

impl From<Jurisdiction> for String {
    fn from(j: Jurisdiction) -> Self {
        j.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_accepted_in_any_case_and_stored_upper_case() {
        assert_eq!(
            Jurisdiction::parse("tx").map(|j| j.to_string()),
            Ok("TX".into())
        );
        assert!(Jurisdiction::parse("XX").is_err());
        assert!(Jurisdiction::parse("").is_err());
    }

    #[test]
    fn csr_cycle_is_annual_only_in_the_listed_states() {
        assert!(Jurisdiction::parse("CA").is_ok_and(|j| j.csr_is_annual()));
        assert!(Jurisdiction::parse("WA").is_ok_and(|j| !j.csr_is_annual()));
    }
}
