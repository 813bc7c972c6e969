//! Renewals: the credentialing team's work to renew one credential before it expires.
//!
//! Lifecycle (`DOMAIN.md`, "Credentials and renewals"):
//!
//! ```text
//! not_started → in_progress → filed → under_review → approved
//!                    ↑                      └──────→ rejected ──(resubmit)──┐
//!                    └──────────────────────────────────────────────────────┘
//! any open state → expired (the credential's expiry passed first) | cancelled (in place of delete)
//! ```
//!
//! The checklist is generated at initiation from the credential's kind (and whether the
//! physician holds a state CSR, looked up before deciding); filing needs every required item
//! done. Progress and the next action are functions of the state ([`Renewal::progress`],
//! [`RenewalStatus::next_action`]), never stored separately, so they cannot disagree with it.
//!
//! Initiation, approval, expiry and cancellation also change the credential's stream (its
//! "open renewal" slot and, on approval, its expiry); the `commands` crate appends both streams'
//! events in one transaction.

use std::fmt;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::credential::CredentialKind;
use crate::jurisdiction::Jurisdiction;
use crate::Aggregate;

/// DEA registration fee, in cents (seed 003).
pub const DEA_FEE_CENTS: i64 = 88_800;

/// Where a renewal is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RenewalStatus {
    NotStarted,
    InProgress,
    Filed,
    UnderReview,
    Approved,
    Rejected,
    Expired,
    Cancelled,
}

impl RenewalStatus {
    pub const ALL: [RenewalStatus; 8] = [
        RenewalStatus::NotStarted,
        RenewalStatus::InProgress,
        RenewalStatus::Filed,
        RenewalStatus::UnderReview,
        RenewalStatus::Approved,
        RenewalStatus::Rejected,
        RenewalStatus::Expired,
        RenewalStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RenewalStatus::NotStarted => "not_started",
            RenewalStatus::InProgress => "in_progress",
            RenewalStatus::Filed => "filed",
            RenewalStatus::UnderReview => "under_review",
            RenewalStatus::Approved => "approved",
            RenewalStatus::Rejected => "rejected",
            RenewalStatus::Expired => "expired",
            RenewalStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == value)
    }

    /// Open renewals still occupy their credential's one renewal slot. A rejected renewal is
    /// open: it can be resubmitted.
    pub fn is_open(self) -> bool {
        !matches!(
            self,
            RenewalStatus::Approved | RenewalStatus::Expired | RenewalStatus::Cancelled
        )
    }

    /// The states this one may move to.
    pub fn allowed_next(self) -> &'static [RenewalStatus] {
        use RenewalStatus::*;
        match self {
            NotStarted => &[InProgress, Expired, Cancelled],
            InProgress => &[Filed, Expired, Cancelled],
            Filed => &[UnderReview, Expired, Cancelled],
            UnderReview => &[Approved, Rejected, Expired, Cancelled],
            Rejected => &[InProgress, Expired, Cancelled],
            Approved | Expired | Cancelled => &[],
        }
    }

    /// What the team should do next, as shown on the dashboard.
    pub fn next_action(self) -> Option<&'static str> {
        match self {
            RenewalStatus::NotStarted => Some("Begin renewal application"),
            RenewalStatus::InProgress => Some("Complete renewal application"),
            RenewalStatus::Filed => Some("Await state board review"),
            RenewalStatus::UnderReview => Some("Respond to any board inquiries"),
            RenewalStatus::Approved | RenewalStatus::Cancelled => None,
            RenewalStatus::Rejected => Some("Review rejection and resubmit"),
            RenewalStatus::Expired => Some("Credential has expired - immediate action required"),
        }
    }
}

impl fmt::Display for RenewalStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Comma-separated list for error messages.
struct StatusList(&'static [RenewalStatus]);

impl fmt::Display for StatusList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("none (it is closed)");
        }
        for (i, s) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            f.write_str(s.as_str())?;
        }
        Ok(())
    }
}

/// One checklist item as generated at initiation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChecklistItem {
    /// Stable key, used in routes (`complete_cme`).
    pub key: String,
    pub title: String,
    pub required: bool,
    pub due: Option<NaiveDate>,
    /// The fee this item pays, in cents, when known.
    pub fee_cents: Option<i64>,
}

/// How a renewal came to be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    Manual,
    Scan,
}

impl Origin {
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Manual => "manual",
            Origin::Scan => "scan",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        [Origin::Manual, Origin::Scan]
            .into_iter()
            .find(|o| o.as_str() == value)
    }
}

/// What a renewal needs to know about its credential, looked up before deciding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CredentialFacts {
    pub credential_id: Uuid,
    pub physician_id: Uuid,
    pub kind: CredentialKind,
    pub jurisdiction: Jurisdiction,
    pub expiry: NaiveDate,
    /// Whether the physician holds a CSR in this jurisdiction (the DEA checklist then asks to
    /// verify it is current).
    pub has_state_csr: bool,
}

/// The checklist for a credential, with due dates relative to its expiry. The seeds give no
/// per-state CME or MATE deadlines, so both are due when the application window opens (60 days
/// before expiry); everything needed to file is due when it closes (30 days before).
pub fn checklist_for(facts: &CredentialFacts) -> Vec<ChecklistItem> {
    let before = |days: i64| facts.expiry.checked_sub_signed(Duration::days(days));
    let item = |key: &str, title: &str, required: bool, due: Option<NaiveDate>| ChecklistItem {
        key: key.to_owned(),
        title: title.to_owned(),
        required,
        due,
        fee_cents: None,
    };
    let review = item(
        "review_requirements",
        "Review expiration date and renewal requirements",
        true,
        before(75),
    );
    let gather = item(
        "gather_documents",
        "Gather all required documents",
        true,
        before(60),
    );
    let submit = item("submit", "Submit renewal application", true, before(30));
    match facts.kind {
        CredentialKind::License => vec![
            review,
            gather,
            item(
                "complete_cme",
                "Complete CME requirements",
                true,
                before(60),
            ),
            item(
                "complete_application",
                "Complete license renewal application",
                true,
                before(30),
            ),
            item(
                "malpractice_insurance",
                "Provide proof of malpractice insurance",
                true,
                before(30),
            ),
            item("pay_fee", "Pay license renewal fee", true, before(30)),
            submit,
            item(
                "background_check",
                "Submit to background check if required",
                false,
                None,
            ),
        ],
        CredentialKind::Dea => {
            let mut items = vec![
                review,
                gather,
                item("dea_form_224a", "Complete DEA Form 224a", true, before(30)),
                item(
                    "state_license_active",
                    "Ensure state medical license is active",
                    true,
                    before(30),
                ),
            ];
            if facts.has_state_csr {
                items.push(item(
                    "state_csr_current",
                    "Verify state CSR is current",
                    true,
                    before(30),
                ));
            }
            items.push(ChecklistItem {
                fee_cents: Some(DEA_FEE_CENTS),
                ..item("pay_fee", "Pay DEA renewal fee ($888)", true, before(30))
            });
            items.push(item(
                "submit_online",
                "Submit renewal online via DEA website",
                true,
                before(30),
            ));
            items.push(submit);
            items
        }
        CredentialKind::Csr => vec![
            review,
            gather,
            item(
                "state_application",
                "Complete state CSR renewal application",
                true,
                before(30),
            ),
            item(
                "mate_training",
                "Complete MATE Act training (annual)",
                true,
                before(60),
            ),
            item("pay_fee", "Pay CSR renewal fee", true, before(30)),
            item(
                "sign_attestation",
                "Sign renewal attestation",
                true,
                before(30),
            ),
            submit,
            item(
                "prescribing_course",
                "Complete controlled substance prescribing course",
                false,
                None,
            ),
        ],
    }
}

/// The renewal's key dates; see `DOMAIN.md` ("Timeline").
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Timeline {
    /// Work starts 90 days before expiry.
    pub work_starts: Option<NaiveDate>,
    pub application_window_opens: Option<NaiveDate>,
    pub application_window_closes: Option<NaiveDate>,
    /// The credential's expiry.
    pub final_deadline: NaiveDate,
    pub initiated_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub filed_at: Option<DateTime<Utc>>,
    /// Board review is estimated at 7 days after filing.
    pub estimated_review_complete: Option<NaiveDate>,
    pub review_started_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RenewalCommand {
    Initiate {
        credential: CredentialFacts,
        origin: Origin,
    },
    /// not_started → in_progress.
    Start,
    /// Marks a checklist item done; on a not-started renewal this starts it.
    CompleteItem {
        item: String,
    },
    File,
    BeginReview,
    /// `new_expiry` defaults to the credential's next cycle.
    Approve {
        new_expiry: Option<NaiveDate>,
    },
    Reject {
        reason: String,
    },
    /// rejected → in_progress.
    Resubmit,
    /// Allowed only once the credential's expiry has passed.
    Expire,
    Cancel {
        reason: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum RenewalEvent {
    RenewalInitiated {
        credential_id: Uuid,
        physician_id: Uuid,
        kind: CredentialKind,
        jurisdiction: Jurisdiction,
        credential_expiry: NaiveDate,
        checklist: Vec<ChecklistItem>,
        origin: Origin,
        at: DateTime<Utc>,
    },
    RenewalStarted {
        at: DateTime<Utc>,
    },
    ChecklistItemCompleted {
        item: String,
        at: DateTime<Utc>,
    },
    RenewalFiled {
        at: DateTime<Utc>,
    },
    RenewalReviewStarted {
        at: DateTime<Utc>,
    },
    RenewalApproved {
        new_expiry: NaiveDate,
        at: DateTime<Utc>,
    },
    RenewalRejected {
        reason: String,
        at: DateTime<Utc>,
    },
    RenewalResubmitted {
        at: DateTime<Utc>,
    },
    RenewalExpired {
        at: DateTime<Utc>,
    },
    RenewalCancelled {
        reason: String,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenewalError {
    #[error("no renewal with this id")]
    NotFound,
    #[error("this renewal was already initiated")]
    AlreadyInitiated,
    #[error("a renewal cannot go from {from} to {to}; from {from} it may go to: {}", StatusList(.from.allowed_next()))]
    TransitionRefused {
        from: RenewalStatus,
        to: RenewalStatus,
    },
    /// `Resubmit` on a renewal that is not rejected. Not a `TransitionRefused`: from not_started,
    /// in_progress is allowed (by `Start`), so "cannot go to in_progress" would contradict itself.
    #[error("only a rejected renewal can be resubmitted; it is {status}, and from {status} it may go to: {}", StatusList(.status.allowed_next()))]
    NotRejected { status: RenewalStatus },
    #[error("checklist items can only be completed while the renewal is not_started, in_progress or rejected; it is {status}")]
    ChecklistClosed { status: RenewalStatus },
    #[error("item: the checklist has no item {item:?}")]
    UnknownItem { item: String },
    #[error("item {item:?} is already complete")]
    ItemAlreadyComplete { item: String },
    #[error("required checklist items are still open: {}", .items.join(", "))]
    RequiredItemsOpen { items: Vec<String> },
    #[error("the credential does not expire until {expiry}; the renewal cannot expire yet")]
    NotYetExpired { expiry: NaiveDate },
    #[error("new_expiry: {new_expiry} is not after the current expiry {expiry}")]
    NewExpiryNotLater {
        expiry: NaiveDate,
        new_expiry: NaiveDate,
    },
    #[error("reason: give a reason (1 to 1000 characters)")]
    InvalidReason,
    #[error("new_expiry: {new_expiry} is not a plausible date (up to 2199-12-31)")]
    ImplausibleNewExpiry { new_expiry: NaiveDate },
}

impl crate::refusal::Refusal for RenewalError {
    fn kind(&self) -> crate::refusal::ErrorKind {
        use crate::refusal::ErrorKind as K;
        use RenewalError as R;
        match self {
            R::NotFound => K::NotFound,
            R::UnknownItem { .. }
            | R::NewExpiryNotLater { .. }
            | R::InvalidReason
            | R::ImplausibleNewExpiry { .. } => K::Invalid,
            R::AlreadyInitiated
            | R::TransitionRefused { .. }
            | R::NotRejected { .. }
            | R::ChecklistClosed { .. }
            | R::ItemAlreadyComplete { .. }
            | R::RequiredItemsOpen { .. }
            | R::NotYetExpired { .. } => K::Conflict,
        }
    }

    fn code(&self) -> &'static str {
        use RenewalError as R;
        match self {
            R::NotFound => "renewal_not_found",
            R::AlreadyInitiated => "renewal_exists",
            R::TransitionRefused { .. } | R::NotRejected { .. } => "transition_refused",
            R::ChecklistClosed { .. } => "checklist_closed",
            R::UnknownItem { .. } => "unknown_checklist_item",
            R::ItemAlreadyComplete { .. } => "item_already_complete",
            R::RequiredItemsOpen { .. } => "required_items_open",
            R::NotYetExpired { .. } => "not_yet_expired",
            R::NewExpiryNotLater { .. } => "invalid_new_expiry",
            R::InvalidReason => "invalid_field",
            R::ImplausibleNewExpiry { .. } => "invalid_date",
        }
    }

    /// Where the renewal is and where it may go; the required items still open.
    fn details(&self) -> serde_json::Map<String, serde_json::Value> {
        match self {
            RenewalError::TransitionRefused { from, .. } => crate::refusal::fields(
                serde_json::json!({ "current_status": from, "allowed": from.allowed_next() }),
            ),
            RenewalError::RequiredItemsOpen { items } => {
                crate::refusal::fields(serde_json::json!({ "open_items": items }))
            }
            _ => serde_json::Map::new(),
        }
    }
}

/// A renewal's state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Renewal {
    /// `None` until initiated.
    pub status: Option<RenewalStatus>,
    pub credential_id: Uuid,
    pub physician_id: Uuid,
    pub kind: Option<CredentialKind>,
    pub jurisdiction: Option<Jurisdiction>,
    pub credential_expiry: Option<NaiveDate>,
    pub checklist: Vec<ChecklistItem>,
    /// Completion time per checklist key.
    pub completed: Vec<(String, DateTime<Utc>)>,
    pub origin: Option<Origin>,
    pub initiated_at: Option<DateTime<Utc>>,
    pub started_at: Option<DateTime<Utc>>,
    pub filed_at: Option<DateTime<Utc>>,
    pub review_started_at: Option<DateTime<Utc>>,
    pub approved_at: Option<DateTime<Utc>>,
    pub rejected_at: Option<DateTime<Utc>>,
    pub expired_at: Option<DateTime<Utc>>,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub rejection_reason: Option<String>,
    pub cancel_reason: Option<String>,
    pub new_expiry: Option<NaiveDate>,
    /// How often it was rejected and resubmitted.
    pub resubmissions: u32,
}

impl Renewal {
    pub fn is_completed(&self, key: &str) -> bool {
        self.completed.iter().any(|(k, _)| k == key)
    }

    /// Required items not yet done, in checklist order.
    pub fn open_required_items(&self) -> Vec<String> {
        self.checklist
            .iter()
            .filter(|i| i.required && !self.is_completed(&i.key))
            .map(|i| i.key.clone())
            .collect()
    }

    /// Percent complete: 0 not started; in progress 10 plus up to 60 for the share of required
    /// items done (so it stays below the 75 of filed); filed 75; under review 90; approved 100.
    /// A rejected renewal counts as in progress again; expired and cancelled ones as 0.
    pub fn progress(&self) -> u8 {
        match self.status {
            None
            | Some(RenewalStatus::NotStarted)
            | Some(RenewalStatus::Expired)
            | Some(RenewalStatus::Cancelled) => 0,
            Some(RenewalStatus::InProgress) | Some(RenewalStatus::Rejected) => {
                let required = self.checklist.iter().filter(|i| i.required).count();
                let done = required - self.open_required_items().len();
                // No required items counts as all of them done.
                let share = (60 * done).checked_div(required).unwrap_or(60);
                10 + share as u8
            }
            Some(RenewalStatus::Filed) => 75,
            Some(RenewalStatus::UnderReview) => 90,
            Some(RenewalStatus::Approved) => 100,
        }
    }

    pub fn next_action(&self) -> Option<&'static str> {
        self.status.and_then(RenewalStatus::next_action)
    }

    pub fn timeline(&self) -> Option<Timeline> {
        let expiry = self.credential_expiry?;
        let before = |days: i64| expiry.checked_sub_signed(Duration::days(days));
        Some(Timeline {
            work_starts: before(90),
            application_window_opens: before(60),
            application_window_closes: before(30),
            final_deadline: expiry,
            initiated_at: self.initiated_at?,
            started_at: self.started_at,
            filed_at: self.filed_at,
            estimated_review_complete: self
                .filed_at
                .and_then(|t| t.date_naive().checked_add_signed(Duration::days(7))),
            review_started_at: self.review_started_at,
            approved_at: self.approved_at,
            rejected_at: self.rejected_at,
            expired_at: self.expired_at,
            cancelled_at: self.cancelled_at,
        })
    }

    fn transition(&self, from: RenewalStatus, to: RenewalStatus) -> Result<(), RenewalError> {
        if from.allowed_next().contains(&to) {
            Ok(())
        } else {
            Err(RenewalError::TransitionRefused { from, to })
        }
    }
}

fn reason(text: &str) -> Result<String, RenewalError> {
    let t = text.trim();
    let printable = t.chars().all(|c| !c.is_control() || c == '\n' || c == '\t');
    if t.is_empty() || t.chars().count() > 1000 || !printable {
        return Err(RenewalError::InvalidReason);
    }
    Ok(t.to_owned())
}

impl Aggregate for Renewal {
    const STREAM_TYPE: &'static str = "renewal";
    type Command = RenewalCommand;
    type Event = RenewalEvent;
    type Error = RenewalError;

    fn decide(
        &self,
        command: &RenewalCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<RenewalEvent>, RenewalError> {
        use RenewalCommand as C;
        use RenewalEvent as E;
        use RenewalStatus as S;
        let status = match (self.status, command) {
            (None, C::Initiate { credential, origin }) => {
                return Ok(vec![E::RenewalInitiated {
                    credential_id: credential.credential_id,
                    physician_id: credential.physician_id,
                    kind: credential.kind,
                    jurisdiction: credential.jurisdiction,
                    credential_expiry: credential.expiry,
                    checklist: checklist_for(credential),
                    origin: *origin,
                    at: now,
                }])
            }
            (None, _) => return Err(RenewalError::NotFound),
            (Some(_), C::Initiate { .. }) => return Err(RenewalError::AlreadyInitiated),
            (Some(status), _) => status,
        };
        match command {
            C::Initiate { .. } => Err(RenewalError::AlreadyInitiated),
            C::Start => {
                self.transition(status, S::InProgress)?;
                if status == S::Rejected {
                    // Resubmission is its own command: it says what happened.
                    return Ok(vec![E::RenewalResubmitted { at: now }]);
                }
                Ok(vec![E::RenewalStarted { at: now }])
            }
            C::Resubmit => {
                if status != S::Rejected {
                    return Err(RenewalError::NotRejected { status });
                }
                Ok(vec![E::RenewalResubmitted { at: now }])
            }
            C::CompleteItem { item } => {
                if !matches!(status, S::NotStarted | S::InProgress | S::Rejected) {
                    return Err(RenewalError::ChecklistClosed { status });
                }
                if !self.checklist.iter().any(|i| &i.key == item) {
                    return Err(RenewalError::UnknownItem {
                        item: item.chars().take(64).collect(),
                    });
                }
                if self.is_completed(item) {
                    return Err(RenewalError::ItemAlreadyComplete { item: item.clone() });
                }
                let mut events = Vec::new();
                if status == S::NotStarted {
                    events.push(E::RenewalStarted { at: now });
                }
                events.push(E::ChecklistItemCompleted {
                    item: item.clone(),
                    at: now,
                });
                Ok(events)
            }
            C::File => {
                self.transition(status, S::Filed)?;
                let open = self.open_required_items();
                if !open.is_empty() {
                    return Err(RenewalError::RequiredItemsOpen { items: open });
                }
                Ok(vec![E::RenewalFiled { at: now }])
            }
            C::BeginReview => {
                self.transition(status, S::UnderReview)?;
                Ok(vec![E::RenewalReviewStarted { at: now }])
            }
            C::Approve { new_expiry } => {
                self.transition(status, S::Approved)?;
                let (Some(expiry), Some(kind), Some(jurisdiction)) =
                    (self.credential_expiry, self.kind, self.jurisdiction)
                else {
                    return Err(RenewalError::NotFound);
                };
                let new_expiry =
                    new_expiry.unwrap_or_else(|| kind.next_expiry(jurisdiction, expiry));
                if new_expiry <= expiry {
                    return Err(RenewalError::NewExpiryNotLater { expiry, new_expiry });
                }
                if crate::credential::plausible_date("new_expiry", new_expiry).is_err() {
                    return Err(RenewalError::ImplausibleNewExpiry { new_expiry });
                }
                Ok(vec![E::RenewalApproved {
                    new_expiry,
                    at: now,
                }])
            }
            C::Reject { reason: text } => {
                self.transition(status, S::Rejected)?;
                Ok(vec![E::RenewalRejected {
                    reason: reason(text)?,
                    at: now,
                }])
            }
            C::Expire => {
                self.transition(status, S::Expired)?;
                let expiry = self.credential_expiry.ok_or(RenewalError::NotFound)?;
                if now.date_naive() <= expiry {
                    return Err(RenewalError::NotYetExpired { expiry });
                }
                Ok(vec![E::RenewalExpired { at: now }])
            }
            C::Cancel { reason: text } => {
                self.transition(status, S::Cancelled)?;
                Ok(vec![E::RenewalCancelled {
                    reason: reason(text)?,
                    at: now,
                }])
            }
        }
    }

    fn evolve(mut self, event: &RenewalEvent) -> Self {
        use RenewalEvent as E;
        use RenewalStatus as S;
        match event {
            E::RenewalInitiated {
                credential_id,
                physician_id,
                kind,
                jurisdiction,
                credential_expiry,
                checklist,
                origin,
                at,
            } => {
                self.status = Some(S::NotStarted);
                self.credential_id = *credential_id;
                self.physician_id = *physician_id;
                self.kind = Some(*kind);
                self.jurisdiction = Some(*jurisdiction);
                self.credential_expiry = Some(*credential_expiry);
                self.checklist = checklist.clone();
                self.origin = Some(*origin);
                self.initiated_at = Some(*at);
            }
            E::RenewalStarted { at } => {
                self.status = Some(S::InProgress);
                self.started_at = Some(*at);
            }
            E::ChecklistItemCompleted { item, at } => {
                if !self.is_completed(item) {
                    self.completed.push((item.clone(), *at));
                }
            }
            E::RenewalFiled { at } => {
                self.status = Some(S::Filed);
                self.filed_at = Some(*at);
            }
            E::RenewalReviewStarted { at } => {
                self.status = Some(S::UnderReview);
                self.review_started_at = Some(*at);
            }
            E::RenewalApproved { new_expiry, at } => {
                self.status = Some(S::Approved);
                self.approved_at = Some(*at);
                self.new_expiry = Some(*new_expiry);
            }
            E::RenewalRejected { reason, at } => {
                self.status = Some(S::Rejected);
                self.rejected_at = Some(*at);
                self.rejection_reason = Some(reason.clone());
            }
            E::RenewalResubmitted { .. } => {
                self.status = Some(S::InProgress);
                self.resubmissions += 1;
            }
            E::RenewalExpired { at } => {
                self.status = Some(S::Expired);
                self.expired_at = Some(*at);
            }
            E::RenewalCancelled { reason, at } => {
                self.status = Some(S::Cancelled);
                self.cancelled_at = Some(*at);
                self.cancel_reason = Some(reason.clone());
            }
        }
        self
    }
}
