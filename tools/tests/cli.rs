//! The `caseledger-tools` binary: what it offers, and the demo load end to end.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_caseledger-tools");

fn server_url() -> String {
    std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/caseledger".into())
}

/// The same server as DATABASE_URL, another database.
fn url_for(database: &str) -> anyhow::Result<String> {
    let mut url = url::Url::parse(&server_url())?;
    url.set_path(database);
    Ok(url.to_string())
}

async fn drop_database(name: &str) -> anyhow::Result<()> {
    let pool = sqlx::PgPool::connect(&url_for("postgres")?).await?;
    sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&pool)
        .await?;
    Ok(())
}

#[test]
fn the_tools_offer_the_demo_and_every_benchmark() -> anyhow::Result<()> {
    let out = Command::new(BIN).arg("--help").output()?;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("demo") && help.contains("bench"), "{help}");
    let out = Command::new(BIN).args(["bench", "--help"]).output()?;
    let help = String::from_utf8_lossy(&out.stdout);
    for bench in ["append", "projections", "scan", "allocation", "claim"] {
        assert!(help.contains(bench), "no {bench}: {help}");
    }
    Ok(())
}

#[tokio::test]
async fn the_demo_loads_the_seed_scale_once_and_finds_it_there_the_second_time(
) -> anyhow::Result<()> {
    let name = format!("caseledger_tools_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let demo = || {
        Command::new(BIN)
            .env_remove("CASELEDGER_DATABASE_URL")
            .arg("demo")
            .env("DATABASE_URL", &url)
            .output()
    };
    let first = demo()?;
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        stdout.contains("demo data: 220 physicians and 770 credentials added (0 already there)"),
        "{stdout}"
    );
    assert!(stdout.contains("dashboard: {"), "{stdout}");

    let second = demo()?;
    assert!(second.status.success());
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(
        stdout.contains("demo data: 0 physicians and 0 credentials added"),
        "{stdout}"
    );
    drop_database(&name).await
}
