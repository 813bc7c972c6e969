//! Waking followers of the log when something was appended.
//!
//! Appends in this process wake local followers at once through a `watch` channel. Other
//! processes learn of them through PostgreSQL `NOTIFY`, sent by one background task rather than
//! inside each append: a transaction that notifies takes a cluster-wide lock on the notification
//! queue while it commits, which would serialise every writer. Bursts of appends coalesce into one
//! `NOTIFY`. Followers also poll, so a missed wake-up (or a writer outside this code) only costs
//! one poll interval.

use std::sync::Arc;

use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::{watch, Notify};

/// The channel appends are announced on.
pub const CHANNEL: &str = "caseledger_events";

/// Shared by a store and its clones: a counter bumped on every known append.
#[derive(Debug, Clone)]
pub struct Wakeup {
    /// Bumped on every local append and every notification; followers wait for a change.
    appended: Arc<watch::Sender<u64>>,
    /// Asks the notifier task to tell other processes; coalesces while it is busy.
    announce: Arc<Notify>,
}

impl Default for Wakeup {
    fn default() -> Self {
        Self {
            appended: Arc::new(watch::channel(0).0),
            announce: Arc::new(Notify::new()),
        }
    }
}

impl Wakeup {
    /// A receiver that sees every later bump.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.appended.subscribe()
    }

    /// Something was appended: wake local followers and ask for a NOTIFY to other processes.
    pub fn appended_here(&self) {
        self.bump();
        self.announce.notify_one();
    }

    fn bump(&self) {
        self.appended.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Runs the cross-process side until the task is aborted: listens for other processes'
    /// notifications and sends ours. Connection losses are retried; a follower keeps polling
    /// meanwhile, so they delay wake-ups and never lose events.
    pub async fn run(self, pool: PgPool) {
        let listen = async {
            loop {
                match PgListener::connect_with(&pool).await {
                    Ok(mut listener) => {
                        if let Err(error) = listener.listen(CHANNEL).await {
                            tracing::warn!(%error, "could not LISTEN for appends; polling only");
                        } else {
                            loop {
                                match listener.try_recv().await {
                                    Ok(Some(_)) => self.bump(),
                                    // The connection dropped; it reconnects on the next call.
                                    // Notifications may have been missed: wake followers to look.
                                    Ok(None) => self.bump(),
                                    Err(error) => {
                                        tracing::warn!(%error, "append listener failed; reconnecting");
                                        break;
                                    }
                                }
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "could not connect the append listener"),
                }
                self.bump();
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        };
        let announce = async {
            loop {
                self.announce.notified().await;
                if let Err(error) = sqlx::query("SELECT pg_notify($1, '')")
                    .bind(CHANNEL)
                    .execute(&pool)
                    .await
                {
                    tracing::debug!(%error, "could not NOTIFY other processes of an append");
                }
            }
        };
        tokio::join!(listen, announce);
    }
}
