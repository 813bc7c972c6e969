//! Credentialing decisions taken from the write side: no read model runs in these tests, so
//! anything a command learnt from one would be missing.

use std::sync::Arc;

use chrono::NaiveDate;
use commands::credentialing::Credentialing;
use commands::SystemClock;
use domain::credential::{CredentialCommand, CredentialKind};
use domain::jurisdiction::Jurisdiction;
use domain::physician::{Npi, PhysicianDetails};
use domain::renewal::{Origin, RenewalEvent};
use eventstore::{EventStore, Metadata};
use sqlx::PgPool;
use uuid::Uuid;

fn npi(n: u32) -> anyhow::Result<Npi> {
    Npi::with_check_digit(&format!("{:09}", 200_000_000 + n))
        .ok_or_else(|| anyhow::anyhow!("no check digit for {n}"))
}

fn date(y: i32, m: u32, d: u32) -> anyhow::Result<NaiveDate> {
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| anyhow::anyhow!("bad date"))
}

/// A physician in `state` with a DEA registration there; returns (physician, DEA credential).
async fn physician_with_dea(
    service: &Credentialing,
    n: u32,
    state: Jurisdiction,
) -> anyhow::Result<(Uuid, Uuid)> {
    let meta = Metadata::by("test");
    let physician = service
        .register_physician(
            npi(n)?,
            PhysicianDetails {
                name: format!("Dr. Write Side {n}"),
                email: format!("write{n}@example.org"),
                specialty: "Anesthesiology".into(),
                states: vec![state],
            },
            &meta,
        )
        .await?
        .stream_id;
    let dea = service
        .register_credential(
            physician,
            CredentialKind::Dea,
            state,
            format!("AB{n:07}"),
            date(2031, 6, 30)?,
            &meta,
        )
        .await?
        .stream_id;
    Ok((physician, dea))
}

fn checklist_keys(events: &[RenewalEvent]) -> Vec<String> {
    events
        .iter()
        .flat_map(|e| match e {
            RenewalEvent::RenewalInitiated { checklist, .. } => {
                checklist.iter().map(|i| i.key.clone()).collect()
            }
            _ => Vec::new(),
        })
        .collect()
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_dea_renewal_right_after_a_csr_registration_asks_to_verify_the_csr(
    pool: PgPool,
) -> anyhow::Result<()> {
    let service = Credentialing::new(EventStore::new(pool), Arc::new(SystemClock));
    let state = Jurisdiction::parse("TX")?;
    let (physician, dea) = physician_with_dea(&service, 1, state).await?;
    service
        .register_credential(
            physician,
            CredentialKind::Csr,
            state,
            "CSR-0001".into(),
            date(2031, 3, 31)?,
            &Metadata::by("test"),
        )
        .await?;

    let renewal = service
        .initiate_renewal(dea, Uuid::new_v4(), Origin::Manual, &Metadata::by("test"))
        .await?;

    let keys = checklist_keys(&renewal.events);
    assert!(
        keys.iter().any(|k| k == "state_csr_current"),
        "checklist: {keys:?}"
    );
    Ok(())
}

#[sqlx::test(migrator = "eventstore::MIGRATOR")]
async fn a_revoked_or_other_state_csr_does_not_put_the_item_on_a_dea_checklist(
    pool: PgPool,
) -> anyhow::Result<()> {
    let service = Credentialing::new(EventStore::new(pool), Arc::new(SystemClock));
    let texas = Jurisdiction::parse("TX")?;
    let (physician, dea) = physician_with_dea(&service, 2, texas).await?;
    let meta = Metadata::by("test");
    let revoked = service
        .register_credential(
            physician,
            CredentialKind::Csr,
            texas,
            "CSR-0002".into(),
            date(2031, 3, 31)?,
            &meta,
        )
        .await?
        .stream_id;
    service
        .credential_command(
            revoked,
            CredentialCommand::Revoke {
                reason: "surrendered".into(),
            },
            &meta,
        )
        .await?;
    service
        .register_credential(
            physician,
            CredentialKind::Csr,
            Jurisdiction::parse("CA")?,
            "CSR-0003".into(),
            date(2031, 3, 31)?,
            &meta,
        )
        .await?;

    let renewal = service
        .initiate_renewal(dea, Uuid::new_v4(), Origin::Manual, &meta)
        .await?;

    let keys = checklist_keys(&renewal.events);
    assert!(!keys.is_empty(), "no checklist was recorded");
    assert!(
        !keys.iter().any(|k| k == "state_csr_current"),
        "checklist: {keys:?}"
    );
    Ok(())
}
