//! The `caseledger` binary as a newcomer meets it: first start, second start, no database.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_caseledger");

/// The binary, with its audit signing key kept outside the source tree (serve creates the key
/// where CASELEDGER_AUDIT_KEY_FILE says, in the working directory by default).
fn bin() -> Command {
    let mut command = Command::new(BIN);
    command.env(
        "CASELEDGER_AUDIT_KEY_FILE",
        std::env::temp_dir().join("caseledger-cli-tests/audit-signing.key"),
    );
    command
}

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

/// Kills the child when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_creates_a_missing_database_migrates_and_answers_health() -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let _server = Child(
        bin()
            .env_remove("CASELEDGER_DATABASE_URL")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", url_for(&name)?)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let health = loop {
        match reqwest::get(format!("http://127.0.0.1:{port}/health")).await {
            Ok(r) => break r.json::<serde_json::Value>().await?,
            Err(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await
            }
            Err(e) => anyhow::bail!("server never answered: {e}"),
        }
    };
    assert_eq!(health["database"], "reachable");
    drop(_server);

    // A second run finds the database and its migrations in place.
    let again = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .arg("migrate")
        .env("DATABASE_URL", url_for(&name)?)
        .output()?;
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    drop_database(&name).await
}

#[test]
fn without_a_database_server_it_says_so_in_one_line_and_exits_non_zero() -> anyhow::Result<()> {
    let url = "postgres://postgres@127.0.0.1:1/caseledger";
    let out = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .arg("migrate")
        .env("DATABASE_URL", url)
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains(url), "names the URL it tried: {stderr}");
    assert!(
        lines[0].contains("pg_ctlcluster"),
        "says how to start a server: {stderr}"
    );
    Ok(())
}

#[test]
fn a_malformed_database_url_is_refused_clearly() -> anyhow::Result<()> {
    let out = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .arg("migrate")
        .env("DATABASE_URL", "mysql://nope")
        .output()?;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid PostgreSQL URL"));
    Ok(())
}

#[tokio::test]
async fn projections_can_be_listed_rebuilt_and_verified_from_the_command_line() -> anyhow::Result<()>
{
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let run = |args: &[&str]| {
        bin()
            .env_remove("CASELEDGER_DATABASE_URL")
            .args(args)
            .env("DATABASE_URL", &url)
            .output()
    };

    let status = run(&["projections", "status"])?;
    assert!(
        status.status.success(),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(String::from_utf8_lossy(&status.stdout).contains("stream_catalogue"));

    let rebuilt = run(&["projections", "rebuild", "stream_catalogue"])?;
    assert!(
        rebuilt.status.success(),
        "{}",
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    assert!(String::from_utf8_lossy(&rebuilt.stdout).contains("rebuilt stream_catalogue"));

    let verified = run(&["projections", "verify", "stream_catalogue"])?;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(String::from_utf8_lossy(&verified.stdout).contains("equals a rebuild"));

    let unknown = run(&["projections", "rebuild", "no_such_model"])?;
    assert!(!unknown.status.success());
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no projection is named \"no_such_model\"")
            && stderr.contains("stream_catalogue"),
        "{stderr}"
    );
    drop_database(&name).await
}

#[tokio::test]
async fn the_first_admin_is_created_from_the_command_line() -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let create = |password: &str| {
        bin()
            .env_remove("CASELEDGER_DATABASE_URL")
            .args([
                "users",
                "create",
                "--username",
                "root",
                "--email",
                "root@example.org",
                "--role",
                "admin",
            ])
            .env("DATABASE_URL", &url)
            .env("CASELEDGER_PASSWORD", password)
            .output()
    };
    let weak = create("password")?;
    assert!(!weak.status.success());
    assert!(
        String::from_utf8_lossy(&weak.stderr).contains("too weak"),
        "{}",
        String::from_utf8_lossy(&weak.stderr)
    );
    let made = create("Adm1n-password!")?;
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    assert!(String::from_utf8_lossy(&made.stdout).contains("created admin root"));
    let again = create("Adm1n-password!")?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    drop_database(&name).await
}

#[tokio::test]
async fn a_deactivated_user_is_reactivated_from_the_command_line() -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let password = "Adm1n-password!";
    let run = |args: &[&str]| {
        bin()
            .env_remove("CASELEDGER_DATABASE_URL")
            .args(args)
            .env("DATABASE_URL", &url)
            .env("CASELEDGER_PASSWORD", password)
            .output()
    };
    let created = run(&[
        "users",
        "create",
        "--username",
        "root",
        "--email",
        "root@example.org",
        "--role",
        "admin",
    ])?;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let created = run(&[
        "users",
        "create",
        "--username",
        "sam",
        "--email",
        "sam@example.org",
        "--role",
        "staff",
    ])?;
    assert!(
        created.status.success(),
        "{}",
        String::from_utf8_lossy(&created.stderr)
    );
    let pool = sqlx::PgPool::connect(&url).await?;
    let users = || {
        commands::users::Users::new(
            eventstore::EventStore::new(pool.clone()),
            std::sync::Arc::new(commands::SystemClock),
        )
    };
    let sam = domain::user::Username::parse("sam")?;
    users().deactivate(&sam, "test").await?;
    assert!(users().login("sam", password, false, None).await.is_err());

    let back = run(&["users", "reactivate", "--username", "sam"])?;
    assert!(
        back.status.success(),
        "{}",
        String::from_utf8_lossy(&back.stderr)
    );
    assert!(String::from_utf8_lossy(&back.stdout).contains("reactivated sam"));
    users().login("sam", password, false, None).await?;

    let again = run(&["users", "reactivate", "--username", "sam"])?;
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already active"));
    let nobody = run(&["users", "reactivate", "--username", "nobody"])?;
    assert!(!nobody.status.success());
    assert!(String::from_utf8_lossy(&nobody.stderr).contains("no such user"));
    pool.close().await;
    drop_database(&name).await
}

fn serve(url: &str, port: u16) -> anyhow::Result<Child> {
    Ok(Child(
        bin()
            .env_remove("CASELEDGER_DATABASE_URL")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    ))
}

/// A server on `port` whose first admin `boss` it creates itself, with `env` set too, and a
/// token of boss's once it answers.
async fn serve_as_boss(
    url: &str,
    port: u16,
    env: &[(&str, &str)],
) -> anyhow::Result<(Child, String)> {
    let server = Child(
        bin()
            .env_remove("CASELEDGER_DATABASE_URL")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", url)
            .env("CASELEDGER_ADMIN_USERNAME", "boss")
            .env("CASELEDGER_ADMIN_PASSWORD", "B0ss-password!")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_healthy(port).await?;
    let session: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/auth/login"))
        .json(&serde_json::json!({"username": "boss", "password": "B0ss-password!"}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let token = session["token"].as_str().unwrap_or_default().to_owned();
    Ok((server, token))
}

async fn wait_healthy(port: u16) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while reqwest::get(format!("http://127.0.0.1:{port}/health"))
        .await
        .is_err()
    {
        anyhow::ensure!(Instant::now() < deadline, "server on {port} never answered");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

#[tokio::test]
async fn when_the_server_running_a_projection_dies_the_other_takes_over() -> anyhow::Result<()> {
    use eventstore::{EventStore, ExpectedVersion, Metadata, NewEvent};

    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let (pa, pb) = (free_port()?, free_port()?);
    let mut a = serve(&url, pa)?;
    wait_healthy(pa).await?;
    let mut b = serve(&url, pb)?;
    wait_healthy(pb).await?;

    let pool = sqlx::PgPool::connect(&url).await?;
    let store = EventStore::new(pool.clone());
    let append = |n: usize| {
        let store = store.clone();
        async move {
            for i in 0..n {
                store
                    .append(
                        uuid::Uuid::new_v4(),
                        "test",
                        ExpectedVersion::NoStream,
                        &[NewEvent::new("Happened", serde_json::json!({ "i": i }))],
                        &Metadata::by("test"),
                    )
                    .await?;
            }
            anyhow::Ok(())
        }
    };
    append(200).await?;

    // Which server leads? The backend holding the runner lock carries its process id. Advisory
    // locks are per database and other tests' servers share this PostgreSQL, so only this
    // test's database counts.
    let leader: String = sqlx::query_scalar(
        "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
         WHERE l.locktype = 'advisory' AND l.granted AND l.classid = $1::bigint::oid \
           AND l.objid = (hashtext('stream_catalogue')::bigint & 4294967295)::oid \
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
    )
    .bind(i64::from(projections::checkpoint::RUNNER_LOCK))
    .fetch_one(&pool)
    .await?;
    let leader_is_a = leader == format!("caseledger-{}", a.0.id());
    assert!(
        leader_is_a || leader == format!("caseledger-{}", b.0.id()),
        "lock held by {leader}"
    );
    let _ = if leader_is_a { a.0.kill() } else { b.0.kill() };

    append(100).await?;
    let head = store.head().await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let at = projections::checkpoint::load_from(&pool, "stream_catalogue").await?;
        if at >= head {
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "nobody took over: checkpoint {at}, head {head}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The servers write events of their own at start (the workflow interventions queue); the
    // test's are the `test` streams.
    let counted: i64 = sqlx::query_scalar(
        "SELECT coalesce(sum(event_count), 0)::bigint FROM read_models.stream_catalogue \
         WHERE stream_type = 'test'",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(counted, 300, "every event applied exactly once");
    drop((a, b));
    pool.close().await;
    let verified = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .args(["projections", "verify", "stream_catalogue"])
        .env("DATABASE_URL", &url)
        .output()?;
    assert!(
        verified.status.success(),
        "{}",
        String::from_utf8_lossy(&verified.stdout)
    );
    drop_database(&name).await
}

#[tokio::test]
async fn sigterm_ends_live_feeds_and_stops_the_server_cleanly() -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let port = free_port()?;
    let (mut server, token) = serve_as_boss(&url, port, &[]).await?;
    let client = reqwest::Client::new();
    let mut feed = client
        .get(format!("http://127.0.0.1:{port}/events/stream"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?;
    // The bootstrap's own events arrive first: the feed is live.
    let first = tokio::time::timeout(Duration::from_secs(10), feed.chunk()).await??;
    assert!(first.is_some());

    let term = Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()?;
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = server.0.try_wait()? {
            break status;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the server did not stop within 10 s of SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(status.success(), "exit status {status}");
    drop(feed);
    drop_database(&name).await
}

#[test]
fn the_server_binary_offers_no_demo_or_benchmarks() -> anyhow::Result<()> {
    let out = bin().arg("--help").output()?;
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("serve"), "{help}");
    for tool in ["bench", "demo"] {
        assert!(
            !help.lines().any(|l| l.trim_start().starts_with(tool)),
            "{tool} is listed: {help}"
        );
    }
    Ok(())
}

#[test]
fn every_configuration_problem_is_reported_before_the_database_is_touched() -> anyhow::Result<()> {
    // No server answers at this URL: getting past validation would fail differently.
    let out = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/caseledger")
        .env("CASELEDGER_WEBHOOK_URL", "https://hooks.example/in")
        .env_remove("CASELEDGER_WEBHOOK_SECRET")
        .env("CASELEDGER_ADMIN_USERNAME", "root")
        .env_remove("CASELEDGER_ADMIN_PASSWORD")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CASELEDGER_WEBHOOK_SECRET"), "{stderr}");
    assert!(stderr.contains("CASELEDGER_ADMIN_PASSWORD"), "{stderr}");
    assert!(!stderr.contains("no PostgreSQL server answers"), "{stderr}");
    Ok(())
}

#[test]
fn a_malformed_setting_in_the_environment_is_refused_at_start() -> anyhow::Result<()> {
    let out = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .arg("serve")
        .env("DATABASE_URL", "postgres://postgres@127.0.0.1:1/caseledger")
        .env("CASELEDGER_JOB_INTERVALS", "renewal-scan=soon")
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--job-intervals") && stderr.contains("\"soon\""),
        "{stderr}"
    );
    Ok(())
}

/// Whether the server started with `CASELEDGER_NO_SCHEDULER=value` says it runs the scheduler.
async fn scheduler_running_with(url: &str, value: &str) -> anyhow::Result<bool> {
    let port = free_port()?;
    let (_server, token) = serve_as_boss(url, port, &[("CASELEDGER_NO_SCHEDULER", value)]).await?;
    let jobs: serde_json::Value = reqwest::Client::new()
        .get(format!("http://127.0.0.1:{port}/jobs"))
        .bearer_auth(token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    jobs["scheduler_running"]
        .as_bool()
        .ok_or_else(|| anyhow::anyhow!("no scheduler_running in {jobs}"))
}

#[tokio::test]
async fn the_no_scheduler_variable_takes_one_and_zero_as_well_as_true_and_false(
) -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    for (value, running) in [("1", false), ("0", true), ("true", false), ("false", true)] {
        assert_eq!(
            scheduler_running_with(&url, value).await?,
            running,
            "CASELEDGER_NO_SCHEDULER={value}"
        );
    }
    drop_database(&name).await
}

/// The secret the crash test's server signs `http` steps with.
const STEP_SECRET: &str = "a-secret-of-sixteen-or-more";

/// What the receiver of the crash test saw: each call's step and idempotency key, and how many
/// calls came without a valid signature.
#[derive(Clone, Default)]
struct Received {
    calls: std::sync::Arc<std::sync::Mutex<Vec<(String, String)>>>,
    unsigned: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn receive_slowly(
    axum::extract::State(received): axum::extract::State<Received>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> axum::Json<serde_json::Value> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    let step = header("x-caseledger-step");
    if header("x-caseledger-signature")
        != commands::notifications::webhook::signature(STEP_SECRET.as_bytes(), &body)
    {
        received
            .unsigned
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    received
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((step.clone(), header("idempotency-key")));
    if step == "slow" {
        // Long enough for the test to kill the server while the call is in flight.
        tokio::time::sleep(Duration::from_millis(1500)).await;
    }
    axum::Json(serde_json::json!({ "step": step }))
}

#[tokio::test]
async fn a_server_killed_during_an_http_step_is_resumed_by_the_next_and_each_step_succeeds_once(
) -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let url = url_for(&name)?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let receiver = format!("http://{}/", listener.local_addr()?);
    let received = Received::default();
    let router = axum::Router::new()
        .route("/", axum::routing::post(receive_slowly))
        .with_state(received.clone());
    let receiver_task = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });

    let port = free_port()?;
    let signed = [("CASELEDGER_WORKFLOW_HTTP_SECRET", STEP_SECRET)];
    let (mut first, token) = serve_as_boss(&url, port, &signed).await?;
    let client = reqwest::Client::new();
    let api = |path: &str| format!("http://127.0.0.1:{port}{path}");
    let step = |id: &str, after: &[&str]| {
        serde_json::json!({"id": id, "kind": "http", "depends_on": after,
                           "config": {"url": receiver}, "timeout_secs": 3,
                           "retry": {"max_attempts": 3, "initial_backoff_ms": 100}})
    };
    client
        .post(api("/workflows"))
        .bearer_auth(&token)
        .json(
            &serde_json::json!({"key": "crash", "name": "Crash", "steps": [
            step("first", &[]), step("slow", &["first"]), step("last", &["slow"])]}),
        )
        .send()
        .await?
        .error_for_status()?;
    let started: serde_json::Value = client
        .post(api("/workflows/crash/runs"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"input": {}}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let run_id = started["run_id"].as_str().unwrap_or_default().to_owned();

    // Kill -9 while the slow step's first call is in flight.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !received
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .any(|(step, _)| step == "slow")
    {
        anyhow::ensure!(Instant::now() < deadline, "the slow step never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    first.0.kill()?;
    first.0.wait()?;

    // A new server resumes the run from the log once the dead attempt's lease runs out.
    let (_second, token) = serve_as_boss(&url, port, &signed).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let run = loop {
        let run: serde_json::Value = client
            .get(api(&format!("/runs/{run_id}")))
            .bearer_auth(&token)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        if run["status"] != "running" {
            break run;
        }
        anyhow::ensure!(Instant::now() < deadline, "the run never ended: {run:#}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(run["status"], "completed", "{run:#}");
    let steps = run["steps"].as_array().cloned().unwrap_or_default();
    let slow = steps
        .iter()
        .find(|s| s["id"] == "slow")
        .cloned()
        .unwrap_or_default();
    assert_eq!(slow["attempts"][0]["interrupted"], true, "{slow:#}");
    assert_eq!(
        slow["attempts"].as_array().map(Vec::len),
        Some(2),
        "{slow:#}"
    );

    let calls = received
        .calls
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let keys_of = |id: &str| -> Vec<String> {
        calls
            .iter()
            .filter(|(s, _)| s == id)
            .map(|(_, k)| k.clone())
            .collect()
    };
    assert_eq!(
        keys_of("first"),
        [format!("{run_id}:first:1")],
        "a step that succeeded never runs again"
    );
    assert_eq!(
        keys_of("slow"),
        [format!("{run_id}:slow:1"), format!("{run_id}:slow:2")],
        "the interrupted attempt is retried under a new key"
    );
    assert_eq!(keys_of("last"), [format!("{run_id}:last:1")]);
    assert_eq!(
        received.unsigned.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "every call carries the HMAC signature of its body"
    );

    let pool = sqlx::PgPool::connect(&url).await?;
    let succeeded: Vec<(String, i64)> = sqlx::query_as(
        "SELECT payload->>'step', count(*) FROM events \
         WHERE stream_id = $1 AND event_type = 'AttemptSucceeded' GROUP BY 1 ORDER BY 1",
    )
    .bind(uuid::Uuid::parse_str(&run_id)?)
    .fetch_all(&pool)
    .await?;
    assert_eq!(
        succeeded,
        [
            ("first".to_owned(), 1),
            ("last".to_owned(), 1),
            ("slow".to_owned(), 1)
        ],
        "each step succeeded once in the log"
    );
    pool.close().await;
    receiver_task.abort();
    drop(_second);
    drop_database(&name).await
}

#[tokio::test]
async fn with_only_the_application_url_commands_need_a_database_migrated_by_the_admin(
) -> anyhow::Result<()> {
    let name = format!("caseledger_cli_{}", uuid::Uuid::new_v4().simple());
    let mut app_url = url::Url::parse(&url_for(&name)?)?;
    app_url
        .set_username("caseledger_app")
        .map_err(|()| anyhow::anyhow!("no user"))?;
    let status = |extra: &[(&str, String)]| -> anyhow::Result<std::process::Output> {
        let mut command = bin();
        command
            .env_remove("CASELEDGER_DATABASE_URL")
            .env_remove("DATABASE_URL")
            .args(["projections", "status"]);
        for (key, value) in extra {
            command.env(key, value);
        }
        Ok(command.output()?)
    };
    // Created (as an admin would) but never migrated: a server holding only the application
    // role's URL cannot migrate it, and says what to run.
    let admin = sqlx::PgPool::connect(&url_for("postgres")?).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await?;
    let refused = status(&[("CASELEDGER_APP_DATABASE_URL", app_url.to_string())])?;
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("caseledger migrate"), "{stderr}");

    let migrated = bin()
        .env_remove("CASELEDGER_DATABASE_URL")
        .arg("migrate")
        .env("DATABASE_URL", url_for(&name)?)
        .output()?;
    assert!(
        migrated.status.success(),
        "{}",
        String::from_utf8_lossy(&migrated.stderr)
    );
    let works = status(&[("CASELEDGER_APP_DATABASE_URL", app_url.to_string())])?;
    assert!(
        works.status.success(),
        "{}",
        String::from_utf8_lossy(&works.stderr)
    );
    admin.close().await;
    drop_database(&name).await
}
