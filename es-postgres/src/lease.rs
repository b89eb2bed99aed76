//! Leases in the store's schema (table `leases`), on the server's clock, so holders on
//! different machines agree on when a lease expires.

use std::time::Duration;

use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type};

use es_core::store::{BackendErrorKind, LeaseAttempt, LeaseGrant, Leases, StoreError};

use crate::PostgresStore;
use crate::error::{Context, backend, pg_error};
use crate::pool::{self, Conn};
use crate::schema::{lock_key, quote};

/// The lease table, created on first use under the migration's lock (concurrent
/// `CREATE TABLE IF NOT EXISTS` can fail in PostgreSQL without one).
fn create(s: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {s}.leases (
            name TEXT PRIMARY KEY,
            holder TEXT NOT NULL,
            token BIGINT NOT NULL CHECK (token > 0),
            expires_at TIMESTAMPTZ NOT NULL
        )"
    )
}

/// Takes or renews a lease in one statement, or reports its holder. The rule is the store
/// kit's `next_token`: a live lease of the same holder keeps its token; a free, expired or
/// released one is taken under a greater token; a live lease of another holder is refused.
/// `ON CONFLICT ... DO UPDATE ... WHERE` locks the row and decides on its newest version,
/// so two askers never both win.
fn acquire(s: &str) -> String {
    format!(
        "WITH taken AS (
            INSERT INTO {s}.leases AS l (name, holder, token, expires_at)
            VALUES ($1, $2, 1, clock_timestamp() + $3 * interval '1 millisecond')
            ON CONFLICT (name) DO UPDATE SET
                holder = excluded.holder,
                token = CASE WHEN l.holder = excluded.holder AND l.expires_at > clock_timestamp()
                             THEN l.token ELSE l.token + 1 END,
                expires_at = excluded.expires_at
            WHERE l.holder = excluded.holder OR l.expires_at <= clock_timestamp()
            RETURNING true AS granted, holder, token, 0::float8 AS left_ms
        )
        SELECT granted, holder, token, left_ms FROM taken
        UNION ALL
        SELECT false, holder, token,
               GREATEST(EXTRACT(EPOCH FROM (expires_at - clock_timestamp())) * 1000, 0)::float8
        FROM {s}.leases WHERE name = $1 AND NOT EXISTS (SELECT 1 FROM taken)"
    )
}

fn release(s: &str) -> String {
    // Expired, not deleted: the next holder's token must still be greater.
    format!("UPDATE {s}.leases SET expires_at = clock_timestamp() WHERE name = $1 AND holder = $2 AND token = $3")
}

fn is_missing_table(error: &tokio_postgres::Error) -> bool {
    error.as_db_error().is_some_and(|db| *db.code() == SqlState::UNDEFINED_TABLE)
}

impl PostgresStore {
    /// Runs a lease statement, creating the lease table first if it is missing.
    /// `Err(Ok(_))`: creating the table failed; `Err(Err(_))`: the statement did.
    async fn lease_statement(
        &self,
        client: &mut Conn,
        sql: &str,
        params: &[(&(dyn ToSql + Sync), Type)],
    ) -> Result<Vec<Row>, Result<StoreError, tokio_postgres::Error>> {
        match client.query_typed(sql, params).await {
            Err(error) if is_missing_table(&error) => {
                self.create_lease_table(client).await.map_err(Ok)?;
                client.query_typed(sql, params).await.map_err(Err)
            }
            result => result.map_err(Err),
        }
    }

    async fn create_lease_table(&self, client: &mut Conn) -> Result<(), StoreError> {
        let s = quote(self.schema());
        let tx = client.transaction().await.context("cannot create the lease table")?;
        tx.query_typed("SELECT pg_advisory_xact_lock($1)", &[(&lock_key(self.schema()), Type::INT8)])
            .await
            .context("cannot lock the schema to create the lease table")?;
        tx.batch_execute(&create(&s)).await.context("cannot create the lease table")?;
        tx.commit().await.context("cannot create the lease table")
    }
}

/// What a lease statement's row says: granted, or held by someone else.
fn attempt(row: &Row, name: &str, ttl: Duration) -> Result<LeaseAttempt, StoreError> {
    let granted: bool = row.try_get(0).context("cannot read a lease")?;
    let holder: String = row.try_get(1).context("cannot read a lease")?;
    let token: i64 = row.try_get(2).context("cannot read a lease")?;
    let left_ms: f64 = row.try_get(3).context("cannot read a lease")?;
    if !granted {
        let expires_in = Duration::try_from_secs_f64(left_ms / 1000.0).unwrap_or(Duration::ZERO);
        return Ok(LeaseAttempt::Held { holder, expires_in });
    }
    let token = u64::try_from(token)
        .map_err(|_| backend(BackendErrorKind::Other, format!("lease `{name}` has token {token} stored")))?;
    Ok(LeaseAttempt::Granted(LeaseGrant { name: name.to_owned(), holder, token, ttl }))
}

/// Leases in the store's schema: every process connected to the schema agrees on who holds
/// one. Expiry is measured on the server's clock.
impl Leases for PostgresStore {
    async fn acquire_lease(&self, name: &str, holder: &str, ttl: Duration) -> Result<LeaseAttempt, StoreError> {
        let sql = acquire(&quote(self.schema()));
        let ttl_ms = ttl.as_secs_f64() * 1000.0;
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&name, Type::TEXT), (&holder, Type::TEXT), (&ttl_ms, Type::FLOAT8)];
        let mut client = self.client("cannot take a lease").await?;
        // No row: another asker inserted the lease after this statement's snapshot was taken
        // (the insert saw its row, the read could not); the next statement sees it.
        for _ in 0..8 {
            let rows = match self.lease_statement(&mut client, &sql, &params).await {
                Ok(rows) => rows,
                Err(Ok(error)) => return Err(error),
                Err(Err(error)) => {
                    pool::release(client, &error);
                    return Err(pg_error("cannot take a lease", error));
                }
            };
            if let Some(row) = rows.first() {
                return attempt(row, name, ttl);
            }
        }
        Err(backend(BackendErrorKind::Busy, "a lease kept changing while it was read"))
    }

    async fn release_lease(&self, grant: &LeaseGrant) -> Result<(), StoreError> {
        let sql = release(&quote(self.schema()));
        let token = i64::try_from(grant.token).unwrap_or(i64::MAX);
        let params: [(&(dyn ToSql + Sync), Type); 3] =
            [(&grant.name, Type::TEXT), (&grant.holder, Type::TEXT), (&token, Type::INT8)];
        let mut client = self.client("cannot release a lease").await?;
        match self.lease_statement(&mut client, &sql, &params).await {
            Ok(_) => Ok(()),
            Err(Ok(error)) => Err(error),
            Err(Err(error)) => {
                pool::release(client, &error);
                Err(pg_error("cannot release a lease", error))
            }
        }
    }
}
