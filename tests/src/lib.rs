//! End-to-end tests of the Caseledger server over HTTP against a real PostgreSQL.
//!
//! [`spawn_app`] serves the real application on a random local port, with its projectors
//! running, backed by a database the test gets from `#[sqlx::test]`, so each test starts from an
//! empty log. [`spawn_app_with`] lets a test change the state first (say, no projectors).

use std::time::Duration;

use std::sync::Arc;

use api::AppState;
use commands::Clock;
use domain::user::Role;
use eventstore::EventStore;
use sqlx::PgPool;

/// The password every test user gets.
pub const PASSWORD: &str = "Corr3ct-horse!";

/// A running server for one test.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub address: String,
    pub store: EventStore,
    /// Sends an admin's bearer token with every request.
    pub client: reqwest::Client,
    /// Sends no token.
    pub anonymous: reqwest::Client,
    pub state: AppState,
    /// Stop when the test ends (dropping a `JoinHandle` would leave them running).
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Creates a user with `role` (and [`PASSWORD`]) through the domain, logs in over HTTP and
    /// returns the bearer token.
    pub async fn token_for(&self, username: &str, role: Role) -> anyhow::Result<String> {
        self.state
            .auth
            .register(
                username,
                &format!("{username}@example.org"),
                role,
                PASSWORD,
                "test",
            )
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        self.login(username, PASSWORD).await
    }

    /// Logs in over HTTP; the token, or an error naming the status.
    pub async fn login(&self, username: &str, password: &str) -> anyhow::Result<String> {
        let response = self
            .anonymous
            .post(self.url("/auth/login"))
            .json(&serde_json::json!({"username": username, "password": password}))
            .send()
            .await?;
        anyhow::ensure!(
            response.status().is_success(),
            "login failed: {}",
            response.status()
        );
        let body: serde_json::Value = response.json().await?;
        body["token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| anyhow::anyhow!("no token in {body}"))
    }

    /// Waits until every read model has applied everything written so far.
    pub async fn settle(&self) -> anyhow::Result<()> {
        let names: Vec<&str> = self
            .state
            .projector
            .projections()
            .iter()
            .map(|p| p.name())
            .collect();
        projections::wait::until_caught_up(&self.store, &names, Duration::from_secs(10)).await?;
        Ok(())
    }

    /// A client that sends `token` with every request.
    pub fn client_with(token: &str) -> anyhow::Result<reqwest::Client> {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse()?,
        );
        Ok(reqwest::Client::builder()
            .default_headers(headers)
            .build()?)
    }
}

/// A valid NPI made from a small number, so that each test physician gets its own.
pub fn npi(n: u32) -> domain::physician::Npi {
    let first_nine = format!("{:09}", 100_000_000 + n);
    // Nine digits always take a check digit.
    domain::physician::Npi::with_check_digit(&first_nine)
        .unwrap_or_else(|| unreachable!("{first_nine} is nine digits"))
}

/// What a test may change before the server starts.
#[derive(Debug, Clone)]
pub struct Options {
    /// Run the projectors, as `caseledger serve` does.
    pub projectors: bool,
    /// How long a query waits for a read model to reach `min_cursor`.
    pub read_wait: Duration,
    /// How long a handler may take.
    pub request_timeout: Duration,
    /// The server's clock; the wall clock when `None`.
    pub clock: Option<Arc<dyn Clock>>,
    /// Login attempts per minute per account and per address; the server's defaults when `None`.
    pub login_limit: Option<u32>,
    /// Where notifications go; the log channel when `None`.
    pub channel: Option<Arc<dyn commands::notifications::NotificationChannel>>,
    /// Run the log's sealer, as `caseledger serve` does. Off only where a test measures the
    /// process's own memory and another worker's allocations would blur it.
    pub sealer: bool,
    /// Run the workflow executor (with its interventions queue created), as `caseledger serve`
    /// does. Off by default: other tests count the events they write.
    pub executor: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            projectors: true,
            read_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            clock: None,
            login_limit: None,
            channel: None,
            executor: false,
            sealer: true,
        }
    }
}

/// A pool on the same database as the server's role, `caseledger_app`, as `caseledger serve`
/// connects: every end-to-end test thereby also checks that the role's grants are enough.
pub async fn as_app_role(pool: &PgPool) -> anyhow::Result<PgPool> {
    let options = (*pool.connect_options())
        .clone()
        .username(api::db::APP_ROLE);
    Ok(sqlx::postgres::PgPoolOptions::new()
        .max_connections(20)
        .connect_with(options)
        .await?)
}

/// Serves the application as `caseledger serve` would, on 127.0.0.1 with a random port.
pub async fn spawn_app(pool: PgPool) -> anyhow::Result<TestApp> {
    spawn_app_with(pool, Options::default()).await
}

pub async fn spawn_app_with(pool: PgPool, options: Options) -> anyhow::Result<TestApp> {
    let pool = as_app_role(&pool).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let store = EventStore::new(pool);
    let config = api::config::Config {
        read_wait: options.read_wait,
        login_limit: options.login_limit,
        http: api::layers::HttpConfig {
            timeout: options.request_timeout,
            ..api::layers::HttpConfig::default()
        },
        // Tests run jobs on request; no scheduler runs here.
        no_scheduler: true,
        ..api::config::Config::default()
    };
    let clock = options
        .clock
        .clone()
        .unwrap_or_else(|| Arc::new(commands::SystemClock));
    let state = match options.channel.clone() {
        Some(channel) => AppState::with_channel(store.clone(), clock, &config, channel)?,
        None => AppState::new(store.clone(), clock, &config)?,
    };
    // As `caseledger serve` does before serving.
    state.projector.create_tables().await?;
    let mut tasks = vec![store.spawn_wakeups()];
    if options.sealer {
        tasks.push(state.audit.sealer().clone().spawn());
    }
    if options.projectors {
        tasks.extend(state.projector.spawn());
    }
    if options.executor {
        state
            .executor
            .prepare()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        tasks.push(state.executor.clone().spawn());
    }
    let served = state.clone();
    tasks.push(tokio::spawn(async move {
        if let Err(error) = api::serve(listener, served, std::future::pending()).await {
            eprintln!("test server failed: {error}");
        }
    }));
    let mut app = TestApp {
        address,
        store,
        client: reqwest::Client::new(),
        anonymous: reqwest::Client::new(),
        state,
        tasks,
    };
    // The admin's session is opened in process, so that it works whatever the HTTP layers do.
    // A second app on the same database finds the admin already there.
    match app
        .state
        .auth
        .register("admin", "admin@example.org", Role::Admin, PASSWORD, "test")
        .await
    {
        Ok(_)
        | Err(commands::CommandError::Rejected(commands::users::UsersRefusal::User(
            domain::user::UserError::AlreadyExists,
        ))) => {}
        Err(e) => anyhow::bail!("{e}"),
    }
    let session = app
        .state
        .auth
        .login("admin", PASSWORD, false, None)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    app.client = TestApp::client_with(&session.token)?;
    Ok(app)
}
