//! End-to-end tests of the Caseledger server over HTTP against a real PostgreSQL.
//!
//! [`spawn_app`] serves the real application on a random local port, with its projectors
//! running, backed by a database the test gets from `#[sqlx::test]`, so each test starts from an
//! empty log. [`spawn_app_with`] lets a test change the state first (say, no projectors).

use std::time::Duration;

use api::AppState;
use commands::EventStore;
use sqlx::PgPool;

/// A running server for one test.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub address: String,
    pub store: EventStore,
    pub client: reqwest::Client,
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
}

/// What a test may change before the server starts.
#[derive(Debug, Clone, Copy)]
pub struct Options {
    /// Run the projectors, as `caseledger serve` does.
    pub projectors: bool,
    /// How long a query waits for a read model to reach `min_cursor`.
    pub read_wait: Duration,
    /// How long a handler may take.
    pub request_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            projectors: true,
            read_wait: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// Serves the application as `caseledger serve` would, on 127.0.0.1 with a random port.
pub async fn spawn_app(pool: PgPool) -> anyhow::Result<TestApp> {
    spawn_app_with(pool, Options::default()).await
}

pub async fn spawn_app_with(pool: PgPool, options: Options) -> anyhow::Result<TestApp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let store = EventStore::new(pool);
    let mut state = AppState::new(store.clone());
    state.read_wait = options.read_wait;
    state.http.timeout = options.request_timeout;
    let mut tasks = vec![store.spawn_wakeups()];
    if options.projectors {
        tasks.extend(state.projector.spawn());
    }
    tasks.push(tokio::spawn(async move {
        if let Err(error) = api::serve(listener, state, std::future::pending()).await {
            eprintln!("test server failed: {error}");
        }
    }));
    Ok(TestApp {
        address,
        store,
        client: reqwest::Client::new(),
        tasks,
    })
}
