//! End-to-end tests of the Caseledger server over HTTP against a real PostgreSQL.
//!
//! [`spawn_app`] serves the real application on a random local port, backed by a database the
//! test gets from `#[sqlx::test]`, so each test starts from an empty log.

use commands::EventStore;
use sqlx::PgPool;

/// A running server for one test.
#[derive(Debug)]
pub struct TestApp {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub address: String,
    pub store: EventStore,
    pub client: reqwest::Client,
    /// Stops the server when dropped.
    _server: tokio::task::JoinHandle<()>,
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }
}

/// Serves the application on 127.0.0.1 with a random port, on `pool`'s database.
pub async fn spawn_app(pool: PgPool) -> anyhow::Result<TestApp> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = format!("http://{}", listener.local_addr()?);
    let store = EventStore::new(pool);
    let state = api::AppState::new(store.clone());
    let server = tokio::spawn(async move {
        if let Err(error) = api::serve(listener, state, std::future::pending()).await {
            eprintln!("test server failed: {error}");
        }
    });
    Ok(TestApp {
        address,
        store,
        client: reqwest::Client::new(),
        _server: server,
    })
}
