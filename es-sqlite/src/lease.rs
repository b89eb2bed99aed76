//! Leases in the store's own file (table `es_leases`), on the wall clock of the processes
//! that share it: they run on one machine, since they share one file.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{OptionalExtension, Transaction};

use es_core::store::{BackendErrorKind, LeaseAttempt, LeaseGrant, LeaseRow, Leases, StoreError, next_token};

use crate::error::{Context, store_failure};
use crate::store::SqliteStore;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS es_leases (
    name TEXT PRIMARY KEY NOT NULL,
    holder TEXT NOT NULL,
    token INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL
)";

fn now_ms() -> i64 {
    // Before 1970 or after the year 292 million, leases are the least of the problems.
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_millis()).unwrap_or(i64::MAX))
}

fn millis(duration: Duration) -> i64 {
    i64::try_from(duration.as_millis()).unwrap_or(i64::MAX)
}

fn stored(tx: &Transaction<'_>, name: &str) -> Result<Option<(String, i64, i64)>, StoreError> {
    tx.execute_batch(CREATE).context("cannot create the lease table")?;
    tx.query_row("SELECT holder, token, expires_at_ms FROM es_leases WHERE name = ?1", [name], |row| {
        Ok((row.get(0)?, row.get(1)?, row.get(2)?))
    })
    .optional()
    .context("cannot read a lease")
}

/// Leases kept in the store's file: every process that opens the file agrees on who holds
/// one. Expiry is measured on the machine's wall clock (a clock set back lengthens a lease).
impl Leases for SqliteStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseAttempt, StoreError> {
        let (name, holder) = (name.to_owned(), holder.to_owned());
        self.transaction(move |tx| {
            let now = now_ms();
            let row = stored(tx, &name)?;
            let token = match &row {
                None => 1,
                Some((stored_holder, token, expires_at)) => {
                    let token = u64::try_from(*token).map_err(|_| {
                        store_failure(BackendErrorKind::Other, format!("lease `{name}` has token {token} stored"))
                    })?;
                    let row = LeaseRow { holder: stored_holder.clone(), token, live: *expires_at > now };
                    match next_token(Some(&row), &holder) {
                        Some(token) => token,
                        None => {
                            let left = u64::try_from(expires_at.saturating_sub(now)).unwrap_or(0);
                            return Ok(LeaseAttempt::Held {
                                holder: stored_holder.clone(),
                                expires_in: Duration::from_millis(left),
                            });
                        }
                    }
                }
            };
            let stored_token = i64::try_from(token).unwrap_or(i64::MAX);
            tx.execute(
                "INSERT INTO es_leases (name, holder, token, expires_at_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = excluded.token,
                 expires_at_ms = excluded.expires_at_ms",
                rusqlite::params![name, holder, stored_token, now.saturating_add(millis(ttl))],
            )
            .context("cannot take a lease")?;
            Ok(LeaseAttempt::Granted(LeaseGrant { name, holder, token, ttl }))
        })
        .await
    }

    async fn release_lease(&self, grant: &LeaseGrant) -> Result<(), StoreError> {
        let grant = grant.clone();
        self.transaction(move |tx| {
            tx.execute_batch(CREATE).context("cannot create the lease table")?;
            // Expired, not deleted: the next holder's token must still be greater.
            tx.execute(
                "UPDATE es_leases SET expires_at_ms = ?4 WHERE name = ?1 AND holder = ?2 AND token = ?3",
                rusqlite::params![grant.name, grant.holder, i64::try_from(grant.token).unwrap_or(i64::MAX), now_ms()],
            )
            .context("cannot release a lease")?;
            Ok(())
        })
        .await
    }
}
