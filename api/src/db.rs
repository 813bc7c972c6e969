//! Reaching PostgreSQL: connect, create the database when it is missing, apply migrations, and
//! say plainly what to do when no server answers.

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};

/// The database the server uses when `DATABASE_URL` is not set.
pub const DEFAULT_DATABASE_URL: &str = "postgres://postgres@127.0.0.1:5432/caseledger";

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("DATABASE_URL {url:?} is not a valid PostgreSQL URL: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error(
        "no PostgreSQL server answers at {url} ({reason}); start one (e.g. `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start`) or set DATABASE_URL"
    )]
    Unreachable { url: String, reason: String },
    #[error("could not create database {name:?}: {source}")]
    Create {
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("could not apply migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// Parsed connection settings plus the URL as given, for messages (password removed).
#[derive(Debug, Clone)]
pub struct Database {
    pub options: PgConnectOptions,
    /// The URL shown in messages, without a password.
    pub display_url: String,
}

impl Database {
    /// The database a command line names: its `--database-url` (or `CASELEDGER_DATABASE_URL`,
    /// which clap reads into it), then `DATABASE_URL`, then the local default.
    ///
    /// `cargo test`'s harness needs DATABASE_URL to name a database that always exists (it
    /// creates one per test there), so under cargo the server's own database comes from
    /// CASELEDGER_DATABASE_URL (see .cargo/config.toml); deployments just set DATABASE_URL.
    pub fn from_cli(database_url: Option<String>) -> Result<Self, DbError> {
        let url = database_url
            .or_else(|| std::env::var("DATABASE_URL").ok())
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        Self::from_url(&url)
    }

    pub fn from_url(url: &str) -> Result<Self, DbError> {
        if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
            return Err(DbError::InvalidUrl {
                url: redact(url),
                reason: "it must start with postgres:// or postgresql://".into(),
            });
        }
        let options = PgConnectOptions::from_str(url).map_err(|e| DbError::InvalidUrl {
            url: redact(url),
            reason: e.to_string(),
        })?;
        Ok(Self {
            // The process id in the application name tells operators (and pg_stat_activity)
            // which server holds which connection, e.g. which one runs a projection.
            options: options
                .log_statements(tracing::log::LevelFilter::Trace)
                .application_name(&format!("caseledger-{}", std::process::id())),
            display_url: redact(url),
        })
    }

    fn name(&self) -> String {
        self.options.get_database().unwrap_or("postgres").to_owned()
    }

    /// Creates the database if it does not exist yet, through the server's `postgres` database.
    pub async fn create_if_missing(&self) -> Result<(), DbError> {
        let name = self.name();
        let admin = self.options.clone().database("postgres");
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(&admin))
                .await
                .map_err(|_| self.unreachable("timed out after 5 s".into()))?
                .map_err(|e| self.unreachable(e.to_string()))?;
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&name)
                .fetch_one(&mut conn)
                .await?;
        if !exists {
            let quoted = format!("\"{}\"", name.replace('"', "\"\""));
            match sqlx::query(&format!("CREATE DATABASE {quoted}"))
                .execute(&mut conn)
                .await
            {
                Ok(_) => tracing::info!(database = %name, "created database"),
                // Another process created it between our check and our CREATE: fine.
                Err(e)
                    if e.as_database_error().and_then(|d| d.code()).as_deref() == Some("42P04") => {
                }
                Err(source) => return Err(DbError::Create { name, source }),
            }
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// A pool of up to `max_connections` connections to the database.
    pub async fn connect(&self, max_connections: u32) -> Result<PgPool, DbError> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(self.options.clone())
            .await
            .map_err(|e| match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                    self.unreachable(e.to_string())
                }
                other => DbError::Sql(other),
            })
    }

    /// Creates the database if needed, connects and migrates: what `serve` does at start.
    pub async fn prepare(&self, max_connections: u32) -> Result<PgPool, DbError> {
        self.create_if_missing().await?;
        let pool = self.connect(max_connections).await?;
        eventstore::MIGRATOR.run(&pool).await?;
        Ok(pool)
    }

    fn unreachable(&self, reason: String) -> DbError {
        DbError::Unreachable {
            url: self.display_url.clone(),
            reason,
        }
    }
}

/// The URL without its password, safe to print.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}
