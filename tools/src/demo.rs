//! `caseledger-tools demo`: the seed's scale of credentialing data (220 physicians, 770 credentials
//! across licences, DEA and CSR registrations in many states, expiries over the next 18 months
//! and some already past), then the renewal scan, then some renewals moved along so that the
//! dashboard has every kind of number to show.
//!
//! Deterministic for a seed: physicians and credentials get ids from their NPI and number, so
//! loading twice finds everything already there and adds nothing.

use std::time::Duration;

use chrono::NaiveDate;
use commands::credentialing::CredentialingRefusal;
use commands::CommandError;
use domain::credential::{CredentialError, CredentialKind};
use domain::jurisdiction::{self, Jurisdiction};
use domain::physician::{Npi, PhysicianDetails, PhysicianError};
use domain::renewal::RenewalCommand;
use eventstore::Metadata;
use projections::credentialing::{self as model, RenewalQuery};

use crate::rng::Rng;
use api::AppState;

pub const PHYSICIANS: usize = 220;
/// One licence, one DEA and one CSR per physician, plus a second-state licence for half.
pub const CREDENTIALS: usize = 770;

const FIRST: &[&str] = &[
    "Amelia", "Benjamin", "Chloe", "Daniel", "Elena", "Farid", "Grace", "Hiro", "Isabel", "Jamal",
    "Keiko", "Liam", "Maya", "Nikhil", "Olivia", "Pedro", "Quinn", "Rosa", "Samuel", "Tara",
];
const LAST: &[&str] = &[
    "Anders", "Brooks", "Castillo", "Dubois", "Evans", "Fischer", "Garcia", "Hughes", "Ibrahim",
    "Jensen", "Kowalski", "Lopez", "Moreau", "Nguyen", "Okafor", "Patel", "Reyes", "Schmidt",
    "Tanaka", "Walker",
];
const SPECIALTIES: &[&str] = &[
    "Family Medicine",
    "Internal Medicine",
    "Pediatrics",
    "Cardiology",
    "Psychiatry",
    "Emergency Medicine",
    "Anesthesiology",
    "Orthopedics",
    "Obstetrics and Gynecology",
    "Dermatology",
];

/// What the demo loaded and did.
#[derive(Debug, Default)]
pub struct DemoReport {
    pub physicians_added: usize,
    pub credentials_added: usize,
    pub already_there: usize,
    pub scan: Option<serde_json::Value>,
    pub moved_along: usize,
}

/// Loads the demo data into the database behind `state` (whose projectors must be running).
pub async fn load(state: &AppState, seed: u64) -> anyhow::Result<DemoReport> {
    let mut rng = Rng(seed);
    let today = state.clock.now().date_naive();
    let meta = Metadata::by("demo");
    let mut report = DemoReport::default();
    let mut credentials = 0;
    for i in 0..PHYSICIANS {
        let first_nine = format!("{:09}", 100_000_000 + rng.below(899_999_999));
        let npi = Npi::with_check_digit(&first_nine)
            .ok_or_else(|| anyhow::anyhow!("{first_nine} are not nine digits"))?;
        let home = Jurisdiction::parse(rng.pick::<&str>(&jurisdiction::ALL))?;
        let second = Jurisdiction::parse(rng.pick::<&str>(&jurisdiction::ALL))?;
        let (first, last) = (rng.pick(FIRST), rng.pick(LAST));
        let details = PhysicianDetails {
            name: format!("Dr. {first} {last}"),
            email: format!(
                "{}.{}.{i}@demo.caseledger.dev",
                first.to_lowercase(),
                last.to_lowercase()
            ),
            specialty: (*rng.pick(SPECIALTIES)).to_owned(),
            states: vec![home, second],
        };
        let physician_id = domain::physician::Physician::stream_id(&npi);
        match state
            .credentialing
            .register_physician(npi.clone(), details, &meta)
            .await
        {
            Ok(_) => report.physicians_added += 1,
            Err(CommandError::Rejected(CredentialingRefusal::Physician(
                PhysicianError::NpiTaken { .. },
            ))) => report.already_there += 1,
            Err(e) => return Err(e.into()),
        }
        let mut held = vec![
            (CredentialKind::License, home),
            (CredentialKind::Dea, home),
            (CredentialKind::Csr, home),
        ];
        if i % 2 == 0 && credentials + 4 <= CREDENTIALS {
            held.push((CredentialKind::License, second));
        }
        for (kind, state_code) in held {
            if credentials >= CREDENTIALS {
                break;
            }
            // Spread over 18 months ahead, with about one in twenty already past.
            let offset = rng.below(570) as i64 - 30;
            let expiry: NaiveDate = today + chrono::Duration::days(offset);
            let number = format!(
                "{}{}-{:07}",
                kind.as_str().to_uppercase(),
                state_code,
                rng.below(9_999_999)
            );
            credentials += 1;
            match state
                .credentialing
                .register_credential(physician_id, kind, state_code, number, expiry, &meta)
                .await
            {
                Ok(_) => report.credentials_added += 1,
                Err(CommandError::Rejected(CredentialingRefusal::Credential(
                    CredentialError::AlreadyRegistered,
                ))) => report.already_there += 1,
                Err(e) => return Err(e.into()),
            }
        }
    }
    caught_up(state).await?;
    state.jobs.register().await?;
    let run = state
        .jobs
        .run_now(commands::jobs::RENEWAL_SCAN, "demo")
        .await?;
    report.scan = run.result.clone();
    caught_up(state).await?;
    // Only on a first load, so that loading again changes nothing.
    if report.physicians_added + report.credentials_added > 0 {
        report.moved_along = move_some_along(state, &meta).await?;
        caught_up(state).await?;
    }
    Ok(report)
}

/// Waits until the credentialing read model has applied everything written so far.
async fn caught_up(state: &AppState) -> anyhow::Result<()> {
    projections::wait::until_caught_up(&state.store, &["credentialing"], Duration::from_secs(60))
        .await
        .map_err(|e| anyhow::anyhow!("the credentialing read model did not catch up: {e}"))
}

/// Starts some opened renewals, files some, approves a few, so that every status shows.
async fn move_some_along(state: &AppState, meta: &Metadata) -> anyhow::Result<usize> {
    let (open, _) = model::list_renewals(
        state.store.pool(),
        &RenewalQuery {
            status: Some(domain::renewal::RenewalStatus::NotStarted),
            limit: 60,
            ..RenewalQuery::default()
        },
    )
    .await?;
    let mut moved = 0;
    for (i, renewal) in open.iter().enumerate() {
        let id = renewal.renewal_id;
        let Some(row) = model::renewal(state.store.pool(), id).await? else {
            continue;
        };
        let items: Vec<String> = row
            .checklist
            .iter()
            .filter(|c| c.required)
            .map(|c| c.key.clone())
            .collect();
        // Two in three get some items done; one in three of those is filed; some go further.
        let done = match i % 3 {
            0 => 0,
            1 => items.len() / 2,
            _ => items.len(),
        };
        if done == 0 {
            continue;
        }
        let c = &state.credentialing;
        for item in items.iter().take(done) {
            c.renewal_command(
                id,
                RenewalCommand::CompleteItem { item: item.clone() },
                meta,
            )
            .await?;
        }
        if done == items.len() {
            c.renewal_command(id, RenewalCommand::File, meta).await?;
            if i % 4 == 2 {
                c.renewal_command(id, RenewalCommand::BeginReview, meta)
                    .await?;
            }
            if i % 8 == 2 {
                c.renewal_command(id, RenewalCommand::Approve { new_expiry: None }, meta)
                    .await?;
            }
        }
        moved += 1;
    }
    Ok(moved)
}
