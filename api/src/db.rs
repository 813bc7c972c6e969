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
    #[error("this needs the admin (bootstrap) database URL: set DATABASE_URL or --database-url")]
    NoAdmin,
    #[error(
        "the database schema is not current (applied: {applied:?}); run `caseledger migrate` with the admin URL (DATABASE_URL) first"
    )]
    NotMigrated { applied: Option<i64> },
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

/// The role the server connects as. It can append to the log and read it, but owns none of it:
/// see `migrations/20261205000010_least_privilege.sql`.
pub const APP_ROLE: &str = "caseledger_app";

/// The two connections Caseledger uses: the bootstrap's (an admin that may create databases and
/// roles, used to create the database, apply migrations and hand the schema to its owner role)
/// and the server's own, as [`APP_ROLE`], which cannot rewrite the log.
#[derive(Debug, Clone)]
pub struct Database {
    /// The bootstrap connection. `None` when only an application URL was given: a production
    /// server that holds no admin credentials, whose database `caseledger migrate` prepared.
    pub admin: Option<PgConnectOptions>,
    /// The server's connection.
    pub app: PgConnectOptions,
    /// Set on [`APP_ROLE`] by the bootstrap, so that the application URL works where
    /// PostgreSQL asks for passwords.
    app_password: Option<String>,
    /// The application URL shown in messages, without a password.
    pub display_url: String,
    /// The admin URL shown in messages, without a password.
    admin_display_url: String,
}

impl Database {
    /// The databases a command line names. The admin URL: `--database-url` (or
    /// `CASELEDGER_DATABASE_URL`, which clap reads into it), then `DATABASE_URL`, then the local
    /// default unless an application URL is given. The application URL: `--app-database-url`
    /// (`CASELEDGER_APP_DATABASE_URL`), else the admin URL with user [`APP_ROLE`] and no
    /// password (enough where PostgreSQL trusts local connections, as on development machines).
    ///
    /// `cargo test`'s harness needs DATABASE_URL to name a database that always exists (it
    /// creates one per test there), so under cargo the server's own database comes from
    /// CASELEDGER_DATABASE_URL (see .cargo/config.toml); deployments just set DATABASE_URL.
    pub fn from_cli(
        database_url: Option<String>,
        app_database_url: Option<String>,
    ) -> Result<Self, DbError> {
        let admin = database_url.or_else(|| std::env::var("DATABASE_URL").ok());
        let admin = match (admin, &app_database_url) {
            (Some(url), _) => Some(url),
            (None, None) => Some(DEFAULT_DATABASE_URL.to_owned()),
            (None, Some(_)) => None,
        };
        let admin = admin.as_deref().map(parse).transpose()?;
        match app_database_url {
            Some(url) => {
                let app = parse(&url)?;
                let password = url::Url::parse(&url)
                    .ok()
                    .and_then(|u| u.password().map(percent_decode));
                let (admin, admin_display_url) = admin.unzip();
                Ok(Self {
                    admin,
                    app: app.0,
                    app_password: password,
                    display_url: app.1,
                    admin_display_url: admin_display_url.unwrap_or_default(),
                })
            }
            None => {
                let (options, display) = admin.ok_or_else(|| DbError::InvalidUrl {
                    url: String::new(),
                    reason: "no database URL given".into(),
                })?;
                let (app, display_url) = parse(&as_app_role(&display))?;
                Ok(Self {
                    admin: Some(options),
                    app,
                    app_password: None,
                    display_url,
                    admin_display_url: display,
                })
            }
        }
    }

    /// One URL for both connections, as the tests and benchmarks use it: the bootstrap as
    /// given, the server as [`APP_ROLE`] on the same database.
    pub fn from_url(url: &str) -> Result<Self, DbError> {
        Self::from_cli(Some(url.to_owned()), None)
    }

    /// The same connections to another database of the same server.
    pub fn with_database(&self, name: &str) -> Self {
        let mut other = self.clone();
        other.admin = other.admin.map(|o| o.database(name));
        other.app = other.app.database(name);
        other
    }

    /// The bootstrap connection, or an error saying it is needed.
    pub fn admin(&self) -> Result<&PgConnectOptions, DbError> {
        self.admin.as_ref().ok_or(DbError::NoAdmin)
    }

    fn name(&self) -> String {
        self.app.get_database().unwrap_or("postgres").to_owned()
    }

    /// Creates the database if it does not exist yet, through the server's `postgres` database.
    pub async fn create_if_missing(&self) -> Result<(), DbError> {
        let name = self.name();
        let admin = self.admin()?.clone().database("postgres");
        let mut conn = self.connect_one(&admin).await?;
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

    /// One admin connection.
    async fn connect_one(&self, options: &PgConnectOptions) -> Result<PgConnection, DbError> {
        let unreachable = |reason: String| DbError::Unreachable {
            url: self.admin_display_url.clone(),
            reason,
        };
        tokio::time::timeout(Duration::from_secs(5), PgConnection::connect_with(options))
            .await
            .map_err(|_| unreachable("timed out after 5 s".into()))?
            .map_err(|e| match e {
                sqlx::Error::Io(_) | sqlx::Error::Tls(_) => unreachable(e.to_string()),
                other => DbError::Sql(other),
            })
    }

    /// A pool of up to `max_connections` connections as [`APP_ROLE`].
    pub async fn connect(&self, max_connections: u32) -> Result<PgPool, DbError> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(self.app.clone())
            .await
            .map_err(|e| match e {
                sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => {
                    self.unreachable(e.to_string())
                }
                other => DbError::Sql(other),
            })
    }

    /// Through the admin connection: creates the database if needed, applies the migrations,
    /// then hands the schema to its owner role and grants the server's role what it needs
    /// (`caseledger_secure()`, which also creates the roles). What `caseledger migrate` does.
    pub async fn bootstrap(&self) -> Result<(), DbError> {
        self.create_if_missing().await?;
        let admin = self.admin()?.clone();
        let mut conn = self.connect_one(&admin).await?;
        eventstore::MIGRATOR.run(&mut conn).await?;
        sqlx::query("SELECT caseledger_secure()")
            .execute(&mut conn)
            .await?;
        if let Some(password) = &self.app_password {
            // ALTER ROLE takes no parameters; a literal with quotes doubled is safe under
            // standard_conforming_strings (the default since PostgreSQL 9.1).
            let literal = password.replace('\'', "''");
            sqlx::query(&format!("ALTER ROLE {APP_ROLE} PASSWORD '{literal}'"))
                .execute(&mut conn)
                .await?;
        }
        let _ = conn.close().await;
        Ok(())
    }

    /// What `serve` and the other commands do at start: the bootstrap when an admin URL is
    /// known, then a pool as [`APP_ROLE`]. Without an admin URL, the schema must already be
    /// current (`caseledger migrate` run with the admin URL); an older one is refused.
    pub async fn prepare(&self, max_connections: u32) -> Result<PgPool, DbError> {
        if self.admin.is_some() {
            self.bootstrap().await?;
        }
        let pool = self.connect(max_connections).await?;
        if self.admin.is_none() {
            let applied: Option<i64> =
                sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                    .fetch_one(&pool)
                    .await
                    .map_err(|_| DbError::NotMigrated { applied: None })?;
            let needed = eventstore::MIGRATOR.iter().map(|m| m.version).max();
            if applied < needed {
                return Err(DbError::NotMigrated { applied });
            }
        }
        Ok(pool)
    }

    fn unreachable(&self, reason: String) -> DbError {
        DbError::Unreachable {
            url: self.display_url.clone(),
            reason,
        }
    }
}

fn parse(url: &str) -> Result<(PgConnectOptions, String), DbError> {
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
    // The process id in the application name tells operators (and pg_stat_activity) which
    // server holds which connection, e.g. which one runs a projection.
    let options = options
        .log_statements(tracing::log::LevelFilter::Trace)
        .application_name(&format!("caseledger-{}", std::process::id()));
    Ok((options, redact(url)))
}

/// The same URL as [`APP_ROLE`], without a password: the role has its own or none.
fn as_app_role(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) => {
            let _ = parsed.set_username(APP_ROLE);
            let _ = parsed.set_password(None);
            parsed.to_string()
        }
        Err(_) => url.to_owned(),
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
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
