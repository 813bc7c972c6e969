//! The server's configuration: one typed struct, read by clap from `serve`'s flags and their
//! `CASELEDGER_*` environment variables, checked as a whole before anything starts, then handed
//! to [`crate::AppState::new`].
//!
//! - Each value is parsed into its type by a clap value parser (addresses, seconds, origins,
//!   `NAME=SECONDS` job intervals, allocation weights), so a malformed one stops the command line
//!   with clap's own message.
//! - [`Config::validate`] then checks what depends on several values (the webhook URL and its
//!   secret, the admin's password) and reports every problem at once.
//! - [`Config::default`] is the configuration with nothing set, the same values clap gives; it is
//!   what the command-line tools and the tests start from.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use clap::builder::BoolishValueParser;
use domain::allocation::{Factor, Weights, WeightsInput};

use crate::layers::HttpConfig;

/// Everything `caseledger serve` can be told.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "CASELEDGER_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Most database connections the server holds.
    #[arg(
        long,
        env = "CASELEDGER_DB_CONNECTIONS",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..)
    )]
    pub db_connections: u32,
    #[command(flatten)]
    pub http: HttpConfig,
    #[command(flatten)]
    pub workflows: WorkflowConfig,
    /// Job intervals overriding the defaults, as NAME=SECONDS pairs (comma-separated), e.g.
    /// `renewal-scan=21600,renewal-expiry=3600`.
    #[arg(
        long,
        env = "CASELEDGER_JOB_INTERVALS",
        default_value = "",
        hide_default_value = true,
        value_parser = parse_job_intervals
    )]
    pub job_intervals: JobIntervals,
    /// Webhook that receives notifications (http or https); without it they go to the log.
    #[arg(long, env = "CASELEDGER_WEBHOOK_URL")]
    pub webhook_url: Option<String>,
    /// Shared secret for the webhook's HMAC-SHA256 signature (16+ characters).
    #[arg(long, env = "CASELEDGER_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Seconds a webhook receiver may take to answer before the attempt counts as failed.
    #[arg(
        long = "webhook-timeout-secs",
        value_name = "SECONDS",
        env = "CASELEDGER_WEBHOOK_TIMEOUT_SECS",
        default_value = "10",
        value_parser = parse_seconds
    )]
    pub webhook_timeout: Duration,
    /// The contact line at the end of every notification.
    #[arg(long, env = "CASELEDGER_NOTIFICATION_CONTACT", default_value = DEFAULT_CONTACT)]
    pub notification_contact: String,
    /// Do not run the job scheduler in this process (jobs still run on request). The variable
    /// takes 1/0, true/false, yes/no, on/off.
    #[arg(
        long,
        env = "CASELEDGER_NO_SCHEDULER",
        action = clap::ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub no_scheduler: bool,
    /// Staff allocation weights overriding the defaults, as FACTOR=WEIGHT pairs
    /// (comma-separated), e.g. `skill_match=30,availability=20,travel_distance=0`; factors:
    /// skill_match, availability, travel_distance, workload, continuity, preference.
    #[arg(
        long,
        env = "CASELEDGER_ALLOCATION_WEIGHTS",
        default_value = "",
        hide_default_value = true,
        value_parser = parse_allocation_weights
    )]
    pub allocation_weights: domain::allocation::Weights,
    /// On first start, the admin to create if no user has this name yet (with
    /// `--admin-password` and, optionally, `--admin-email`).
    #[arg(long, env = "CASELEDGER_ADMIN_USERNAME")]
    pub admin_username: Option<String>,
    /// The first admin's password.
    #[arg(long, env = "CASELEDGER_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// The first admin's email; `<username>@localhost` when not given.
    #[arg(long, env = "CASELEDGER_ADMIN_EMAIL")]
    pub admin_email: Option<String>,
    /// The ed25519 key that signs the log's hash-chain checkpoints (64 hex characters, the
    /// seed), created with mode 0600 on first start if missing. Servers sharing a database
    /// should share the key; auditors trust its public half (`caseledger audit public-key`).
    #[arg(
        long,
        env = "CASELEDGER_AUDIT_KEY_FILE",
        default_value = DEFAULT_AUDIT_KEY_FILE
    )]
    pub audit_key_file: Option<std::path::PathBuf>,
    /// Longest a query waits for its read model to reach a requested cursor. Not a flag: tests
    /// shorten or lengthen it.
    #[arg(skip = crate::consistency::WAIT_TIMEOUT)]
    pub read_wait: Duration,
    /// Login attempts per minute, per account and per address, replacing the defaults. Not a
    /// flag: tests raise or lower it.
    #[arg(skip)]
    pub login_limit: Option<u32>,
}

/// Where the audit signing key lives unless configured: beside the working directory.
pub const DEFAULT_AUDIT_KEY_FILE: &str = ".caseledger/audit-signing.key";

/// The contact line of notifications unless configured.
pub const DEFAULT_CONTACT: &str = "Contact the credentialing team for assistance.";

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            db_connections: 20,
            http: HttpConfig::default(),
            workflows: WorkflowConfig::default(),
            job_intervals: JobIntervals::default(),
            webhook_url: None,
            webhook_secret: None,
            webhook_timeout: Duration::from_secs(10),
            notification_contact: DEFAULT_CONTACT.to_owned(),
            no_scheduler: false,
            allocation_weights: domain::allocation::Weights::DEFAULT,
            admin_username: None,
            admin_password: None,
            admin_email: None,
            // No file: a key of its own for each state (tests, one-off commands that sign
            // nothing). `serve` always has the file (clap's default).
            audit_key_file: None,
            read_wait: crate::consistency::WAIT_TIMEOUT,
            login_limit: None,
        }
    }
}

/// The workflow executor's settings.
#[derive(Debug, Clone, PartialEq, clap::Args)]
pub struct WorkflowConfig {
    /// Do not run the workflow executor in this process (runs still start and are steered over
    /// HTTP; another server's executor drives them). Takes 1/0, true/false, yes/no, on/off.
    #[arg(
        long,
        env = "CASELEDGER_NO_WORKFLOW_EXECUTOR",
        action = clap::ArgAction::SetTrue,
        value_parser = BoolishValueParser::new()
    )]
    pub no_workflow_executor: bool,
    /// Workflow step attempts this server runs at once.
    #[arg(
        long,
        env = "CASELEDGER_WORKFLOW_CONCURRENCY",
        default_value_t = 16,
        value_parser = clap::value_parser!(u32).range(1..=1000)
    )]
    pub workflow_concurrency: u32,
    /// Step attempts one run may have running at once, across all servers.
    #[arg(
        long,
        env = "CASELEDGER_WORKFLOW_RUN_PARALLELISM",
        default_value_t = 4,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub workflow_run_parallelism: u32,
    /// The work queue (by name) that gets a task when a step fails with `on_failure:
    /// ask_person`; created at start (in department WORKFLOW-OPS) when missing.
    #[arg(
        long,
        env = "CASELEDGER_WORKFLOW_INTERVENTIONS_QUEUE",
        default_value = DEFAULT_INTERVENTIONS_QUEUE
    )]
    pub workflow_interventions_queue: String,
    /// Secret for the HMAC-SHA256 signature of `http` steps' requests (16+ characters); the
    /// webhook secret when not given, unsigned when neither is.
    #[arg(long, env = "CASELEDGER_WORKFLOW_HTTP_SECRET", hide_env_values = true)]
    pub workflow_http_secret: Option<String>,
}

/// Where incidents go unless configured.
pub const DEFAULT_INTERVENTIONS_QUEUE: &str = "Workflow interventions";

impl Default for WorkflowConfig {
    fn default() -> Self {
        Self {
            no_workflow_executor: false,
            workflow_concurrency: 16,
            workflow_run_parallelism: 4,
            workflow_interventions_queue: DEFAULT_INTERVENTIONS_QUEUE.to_owned(),
            workflow_http_secret: None,
        }
    }
}

impl WorkflowConfig {
    /// The executor's settings.
    pub fn executor(&self) -> commands::workflows::ExecutorSettings {
        commands::workflows::ExecutorSettings {
            concurrency: self.workflow_concurrency as usize,
            run_parallelism: self.workflow_run_parallelism as usize,
            interventions_queue: self.workflow_interventions_queue.trim().to_owned(),
            ..Default::default()
        }
    }
}

/// Job intervals by job name, overriding each job's default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JobIntervals(pub HashMap<String, Duration>);

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Every problem [`Config::validate`] found, one per line.
    #[error("the configuration has {} problem(s):\n  {}", .0.len(), .0.join("\n  "))]
    Invalid(Vec<String>),
    #[error(transparent)]
    Channel(#[from] commands::notifications::ChannelConfigError),
    #[error("CASELEDGER_JOB_INTERVALS: {0}")]
    Jobs(#[from] commands::jobs::JobError),
    #[error("CASELEDGER_AUDIT_KEY_FILE: {0}")]
    AuditKey(#[from] commands::audit::AuditError),
}

impl Config {
    /// The audit signing key: the configured file's (created if missing), or a fresh one.
    pub fn audit_key(&self) -> Result<commands::audit::AuditKey, ConfigError> {
        Ok(match &self.audit_key_file {
            Some(path) => commands::audit::AuditKey::load_or_create(path)?,
            None => commands::audit::AuditKey::generate(),
        })
    }

    /// Checks what no single value's parser can: returns every problem, not just the first.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = Vec::new();
        // The channel is what the server will build; building it here checks the URL, the
        // secret that must come with it, and the secret's length in one place.
        if let Err(e) = self.channel() {
            problems.push(e.to_string());
        }
        if let Some(secret) = &self.workflows.workflow_http_secret {
            if secret.len() < 16 {
                problems
                    .push("CASELEDGER_WORKFLOW_HTTP_SECRET must be at least 16 characters".into());
            }
        }
        if self
            .workflows
            .workflow_interventions_queue
            .trim()
            .is_empty()
        {
            problems.push("CASELEDGER_WORKFLOW_INTERVENTIONS_QUEUE must name a queue".into());
        }
        if self.admin_username.is_some() && self.admin_password.is_none() {
            problems.push(
                "CASELEDGER_ADMIN_USERNAME is set, so CASELEDGER_ADMIN_PASSWORD must be too".into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Where notifications go under this configuration.
    pub fn channel(
        &self,
    ) -> Result<
        std::sync::Arc<dyn commands::notifications::NotificationChannel>,
        commands::notifications::ChannelConfigError,
    > {
        commands::notifications::channel_from_config(
            self.webhook_url.as_deref(),
            self.webhook_secret.as_deref(),
            self.webhook_timeout,
        )
    }
}

impl Config {
    /// What `http` workflow steps sign their requests with.
    pub fn workflow_http(&self) -> commands::workflows::kinds::http::HttpSettings {
        let secret = self
            .workflows
            .workflow_http_secret
            .as_ref()
            .or(self.webhook_secret.as_ref());
        commands::workflows::kinds::http::HttpSettings {
            secret: secret.map(|s| s.as_bytes().to_vec()),
        }
    }
}

/// Longest interval a job may be given: a year.
const MAX_JOB_INTERVAL_SECS: u64 = 366 * 24 * 3600;

/// A whole number of seconds, at least one (a zero timeout would refuse everything).
pub fn parse_seconds(value: &str) -> Result<Duration, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err("must be at least 1 second".into()),
        Ok(seconds) => Ok(Duration::from_secs(seconds)),
        Err(_) => Err(format!("{value:?} is not a whole number of seconds")),
    }
}

/// `NAME=SECONDS` pairs, comma-separated; empty entries are ignored, so an empty value means
/// every job keeps its default. Whether each name is a job is checked when the jobs are built.
pub fn parse_job_intervals(value: &str) -> Result<JobIntervals, String> {
    let mut out = HashMap::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, seconds) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not NAME=SECONDS"))?;
        let seconds: u64 = seconds
            .trim()
            .parse()
            .ok()
            .filter(|s| (1..=MAX_JOB_INTERVAL_SECS).contains(s))
            .ok_or_else(|| format!("{seconds:?} is not a number of seconds from 1 to a year"))?;
        out.insert(name.trim().to_owned(), Duration::from_secs(seconds));
    }
    Ok(JobIntervals(out))
}

/// See [`parse_weights`]; an empty value means the defaults.
pub fn parse_allocation_weights(value: &str) -> Result<Weights, String> {
    parse_weights(value)
}

/// The weights configured by `CASELEDGER_ALLOCATION_WEIGHTS`: `NAME=WEIGHT` pairs separated by
/// commas, names from [`Factor::as_str`] (`skill_match`, `availability`, `travel_distance`,
/// `workload`, `continuity`, `preference`), weights whole numbers from 0 to 1,000,000. A factor
/// not named keeps its default ([`Weights::DEFAULT`]); an empty string means all defaults.
/// Refused, naming the culprit: an unknown or repeated name, a weight that is not a whole
/// number, negative or too large, and weights that come out all zero.
pub fn parse_weights(spec: &str) -> Result<Weights, String> {
    let mut input = WeightsInput::from(Weights::DEFAULT);
    let mut seen: BTreeSet<Factor> = BTreeSet::new();
    for pair in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not NAME=WEIGHT"))?;
        let name = name.trim();
        let factor = Factor::ALL
            .into_iter()
            .find(|f| f.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "{name:?} is not a factor (use {})",
                    Factor::ALL.map(Factor::as_str).join(", ")
                )
            })?;
        if !seen.insert(factor) {
            return Err(format!("{name} is given twice"));
        }
        let value: i64 = value
            .trim()
            .parse()
            .map_err(|_| format!("{name}: {:?} is not a whole number", value.trim()))?;
        *weight_slot(&mut input, factor) = value;
    }
    Weights::new(input).map_err(|e| e.to_string())
}

pub(crate) fn weight_slot(input: &mut WeightsInput, factor: Factor) -> &mut i64 {
    match factor {
        Factor::SkillMatch => &mut input.skill_match,
        Factor::Availability => &mut input.availability,
        Factor::TravelDistance => &mut input.travel_distance,
        Factor::Workload => &mut input.workload,
        Factor::Continuity => &mut input.continuity,
        Factor::Preference => &mut input.preference,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        config: Config,
    }

    /// Parses flags alone: the environment this test runs in must not leak in, so every
    /// argument's variable is dropped (environment variables are tested on the binary, in
    /// `tests/cli.rs`).
    fn parse(args: &[&str]) -> Result<Config, clap::Error> {
        let command =
            <Cli as clap::CommandFactory>::command().mut_args(|a| a.env(None::<&'static str>));
        let matches = command
            .try_get_matches_from(std::iter::once("caseledger").chain(args.iter().copied()))?;
        <Cli as clap::FromArgMatches>::from_arg_matches(&matches).map(|cli| cli.config)
    }

    #[test]
    fn the_default_configuration_is_what_no_flags_give() -> Result<(), clap::Error> {
        // Except the audit key: `serve` keeps it in a file; other states make a key of their own.
        assert_eq!(
            parse(&[])?,
            Config {
                audit_key_file: Some(DEFAULT_AUDIT_KEY_FILE.into()),
                ..Config::default()
            }
        );
        Ok(())
    }

    #[test]
    fn flags_are_parsed_into_typed_values() -> Result<(), clap::Error> {
        let config = parse(&[
            "--listen",
            "0.0.0.0:9000",
            "--request-timeout-secs",
            "7",
            "--cors-origins",
            "https://a.example, https://b.example,",
            "--job-intervals",
            "renewal-scan=60, ,sla-escalation=5",
            "--allocation-weights",
            "skill_match=1",
            "--no-scheduler",
        ])?;
        assert_eq!(config.listen, SocketAddr::from(([0, 0, 0, 0], 9000)));
        assert_eq!(config.http.timeout, Duration::from_secs(7));
        assert_eq!(config.http.cors_origins.0.len(), 2);
        assert_eq!(
            config.job_intervals.0,
            HashMap::from([
                ("renewal-scan".to_owned(), Duration::from_secs(60)),
                ("sla-escalation".to_owned(), Duration::from_secs(5)),
            ])
        );
        assert_eq!(
            config.allocation_weights,
            parse_weights("skill_match=1")
                .map_err(|e| { clap::Error::raw(clap::error::ErrorKind::InvalidValue, e) })?
        );
        assert!(config.no_scheduler);
        Ok(())
    }

    #[test]
    fn malformed_values_are_refused_naming_the_flag() {
        for (flag, value) in [
            ("--listen", "localhost"),
            ("--db-connections", "0"),
            ("--request-timeout-secs", "0"),
            ("--webhook-timeout-secs", "soon"),
            ("--cors-origins", "https://a.\u{1}example"),
            ("--job-intervals", "renewal-scan"),
            ("--job-intervals", "renewal-scan=0"),
            ("--allocation-weights", "charm=3"),
        ] {
            let error = match parse(&[flag, value]) {
                Ok(config) => panic!("{flag} {value:?} was accepted: {config:?}"),
                Err(e) => e.to_string(),
            };
            assert!(error.contains(flag), "{flag}: {error}");
        }
    }

    #[test]
    fn every_problem_across_values_is_reported_at_once() -> Result<(), clap::Error> {
        let config = parse(&[
            "--webhook-url",
            "https://hooks.example/in",
            "--admin-username",
            "root",
        ])?;
        let Err(ConfigError::Invalid(problems)) = config.validate() else {
            panic!("a webhook without a secret and an admin without a password were accepted");
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].contains("CASELEDGER_WEBHOOK_SECRET"),
            "{problems:?}"
        );
        assert!(
            problems[1].contains("CASELEDGER_ADMIN_PASSWORD"),
            "{problems:?}"
        );
        Ok(())
    }

    #[test]
    fn a_webhook_with_its_secret_and_an_admin_with_a_password_are_valid() -> Result<(), ConfigError>
    {
        let config = Config {
            webhook_url: Some("https://hooks.example/in".into()),
            webhook_secret: Some("sixteen-chars-or-more".into()),
            admin_username: Some("root".into()),
            admin_password: Some("Adm1n-password!".into()),
            ..Config::default()
        };
        config.validate()
    }

    #[test]
    fn configured_weights_override_the_defaults_factor_by_factor() {
        assert_eq!(parse_weights(""), Ok(Weights::DEFAULT));
        let w = parse_weights(" travel_distance = 50 , preference=0").expect("valid");
        assert_eq!(w.get(Factor::TravelDistance), 50);
        assert_eq!(w.get(Factor::Preference), 0);
        assert_eq!(
            w.get(Factor::SkillMatch),
            Weights::DEFAULT.get(Factor::SkillMatch)
        );
    }

    #[test]
    fn bad_configured_weights_are_refused_naming_the_culprit() {
        for (spec, says) in [
            ("skill_match=-1", "skill_match"),
            ("skills=3", "\"skills\" is not a factor"),
            ("workload", "is not NAME=WEIGHT"),
            ("workload=lots", "workload"),
            ("workload=1,workload=2", "workload is given twice"),
            ("availability=2000000", "availability"),
            (
                "skill_match=0,availability=0,travel_distance=0,workload=0,continuity=0,preference=0",
                "at least one weight",
            ),
        ] {
            let error = parse_weights(spec).expect_err(spec);
            assert!(error.contains(says), "{spec}: {error}");
        }
    }
}
