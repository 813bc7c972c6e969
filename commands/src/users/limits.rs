//! Limits on password attempts (logins and password changes), per account and per client
//! address, in bounded memory.
//!
//! An account is keyed by a 16-byte hash of the name as sent, never the name itself: a login
//! body may carry a username of up to the body limit (a megabyte), and a map keyed by the raw
//! name kept one such copy per distinct name. Both maps are pruned of keys whose limit has run
//! out (at most once a second, and at least once a minute), and never grow past `max_keys`: when
//! a map is full of keys still limited, attempts are refused as rate limited until it drains.
//! That is the price of bounded memory under an attack from very many names or addresses; the
//! per-account lockout still stands behind it.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use blake2::{Blake2b512, Digest};
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DashMapStateStore;
use governor::{NotUntil, Quota, RateLimiter};

/// What an account is limited under: the first 16 bytes of the name's BLAKE2b hash.
pub(crate) type AccountKey = [u8; 16];

pub(crate) fn account_key(username: &str) -> AccountKey {
    let digest = Blake2b512::digest(username.as_bytes());
    let mut key = [0; 16];
    key.copy_from_slice(&digest[..16]);
    key
}

/// Keys each map may hold: a few megabytes at most.
pub(crate) const MAX_KEYS: usize = 100_000;

/// Pruning walks the whole map, so under attack it runs at most this often.
const PRUNE_AT_MOST_EVERY: Duration = Duration::from_secs(1);
/// And this often at least, so that memory comes back after a burst.
const PRUNE_AT_LEAST_EVERY: Duration = Duration::from_secs(60);

type Keyed<K, C> = RateLimiter<K, DashMapStateStore<K>, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The per-account and per-address limits of password attempts.
pub(crate) struct Limits<C: Clock = DefaultClock> {
    per_account: Keyed<AccountKey, C>,
    per_address: Keyed<IpAddr, C>,
    clock: C,
    max_keys: usize,
    last_prune: Mutex<C::Instant>,
}

fn per_minute(n: u32) -> Quota {
    Quota::per_minute(NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN))
}

impl Limits {
    pub(crate) fn new(per_account: u32, per_address: u32) -> Self {
        Self::with_clock(per_account, per_address, MAX_KEYS, DefaultClock::default())
    }
}

impl<C: Clock + Clone> Limits<C> {
    pub(crate) fn with_clock(
        per_account: u32,
        per_address: u32,
        max_keys: usize,
        clock: C,
    ) -> Self {
        Self {
            per_account: RateLimiter::dashmap_with_clock(per_minute(per_account), clock.clone()),
            per_address: RateLimiter::dashmap_with_clock(per_minute(per_address), clock.clone()),
            last_prune: Mutex::new(clock.now()),
            clock,
            max_keys,
        }
    }

    /// Counts one attempt for `username` from `address`; `Err` holds the seconds to wait.
    pub(crate) fn admit(&self, username: &str, address: Option<IpAddr>) -> Result<(), u64> {
        self.prune_when_due();
        if let Some(address) = address {
            if self.per_address.len() >= self.max_keys {
                return Err(PRUNE_AT_MOST_EVERY.as_secs().max(1));
            }
            self.per_address
                .check_key(&address)
                .map_err(|n| self.seconds_until(n))?;
        }
        if self.per_account.len() >= self.max_keys {
            return Err(PRUNE_AT_MOST_EVERY.as_secs().max(1));
        }
        self.per_account
            .check_key(&account_key(username))
            .map_err(|n| self.seconds_until(n))
    }

    fn seconds_until(&self, not_until: NotUntil<C::Instant>) -> u64 {
        not_until.wait_time_from(self.clock.now()).as_secs().max(1)
    }

    /// Drops the keys whose limit has run out, when a map is full or a minute has passed, and
    /// not more than once a second.
    fn prune_when_due(&self) {
        let now = self.clock.now();
        let full =
            self.per_account.len() >= self.max_keys || self.per_address.len() >= self.max_keys;
        {
            let mut last = self.last_prune.lock().unwrap_or_else(|p| p.into_inner());
            let since = Duration::from(now.duration_since(*last));
            if since < PRUNE_AT_MOST_EVERY || (!full && since < PRUNE_AT_LEAST_EVERY) {
                return;
            }
            *last = now;
        }
        self.per_account.retain_recent();
        self.per_address.retain_recent();
        self.per_account.shrink_to_fit();
        self.per_address.shrink_to_fit();
    }

    /// Keys held now, per account and per address.
    #[cfg(test)]
    fn sizes(&self) -> (usize, usize) {
        (self.per_account.len(), self.per_address.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use governor::clock::FakeRelativeClock;

    fn limits(max_keys: usize) -> (Limits<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Limits::with_clock(10, 30, max_keys, clock.clone()), clock)
    }

    #[test]
    fn a_username_of_any_length_is_kept_under_a_sixteen_byte_key() {
        let long = "a".repeat(1024 * 1024);
        assert_eq!(account_key(&long).len(), 16);
        assert_ne!(account_key(&long), account_key(&long[1..]));
        assert_eq!(account_key("alice"), account_key("alice"));
    }

    #[test]
    fn the_eleventh_attempt_in_a_minute_on_one_account_waits() {
        let (limits, clock) = limits(MAX_KEYS);
        for _ in 0..10 {
            assert_eq!(limits.admit("alice", None), Ok(()));
        }
        assert!(limits.admit("alice", None).is_err());
        assert_eq!(limits.admit("bob", None), Ok(()), "another account");
        clock.advance(Duration::from_secs(6));
        assert_eq!(limits.admit("alice", None), Ok(()));
    }

    #[test]
    fn keys_whose_limit_has_run_out_are_dropped_within_a_minute() {
        let (limits, clock) = limits(MAX_KEYS);
        let address = IpAddr::from([192, 0, 2, 1]);
        for n in 0..20 {
            let _ = limits.admit(&format!("user{n}-{}", "x".repeat(10_000)), Some(address));
        }
        assert_eq!(limits.sizes(), (20, 1));
        clock.advance(Duration::from_secs(61));
        assert_eq!(limits.admit("last", None), Ok(()));
        assert_eq!(limits.sizes(), (1, 0));
    }

    #[test]
    fn a_full_map_refuses_attempts_instead_of_growing_until_its_keys_run_out() {
        let (limits, clock) = limits(8);
        for n in 0..8 {
            assert_eq!(limits.admit(&format!("user{n}"), None), Ok(()));
        }
        clock.advance(Duration::from_secs(2));
        assert!(limits.admit("user8", None).is_err());
        assert!(limits.admit("user9", None).is_err());
        assert_eq!(limits.sizes().0, 8);
        clock.advance(Duration::from_secs(60));
        assert_eq!(limits.admit("user8", None), Ok(()));
        assert_eq!(limits.sizes().0, 1);
    }
}
