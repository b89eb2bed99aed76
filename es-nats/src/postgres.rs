//! PostgreSQL (feature `postgres`): the relay's checkpoint in the store's own schema, so
//! several processes writing to one PostgreSQL store publish through one relay at a time
//! (the store's lease) from one checkpoint.

use es_core::projection::{HandlerError, SavedCheckpoint};
use es_core::store::StoreError;
use es_postgres::tokio_postgres::Transaction;
use es_postgres::{PostgresCheckpoints, PostgresFlush, PostgresStore};

/// The relay's flush: a relay keeps no read model, only its checkpoint.
#[derive(Debug, Clone, Copy, Default)]
pub struct NothingToWrite;

impl PostgresFlush<()> for NothingToWrite {
    type Batch = ();

    fn take(&self, (): &mut ()) {}

    async fn write(&self, _: &Transaction<'_>, (): (), _: &SavedCheckpoint) -> Result<(), HandlerError> {
        Ok(())
    }
}

/// The relay's checkpoint store on PostgreSQL: [`PostgresCheckpoints`] with nothing to write.
pub type RelayCheckpoints = PostgresCheckpoints<NothingToWrite>;

/// The relay's checkpoint in the store's schema (table `projection_checkpoints`, beside the
/// projections' own, under the relay's name).
///
/// ```no_run
/// # async fn run(jetstream: es_nats::async_nats::jetstream::Context) -> Result<(), Box<dyn std::error::Error>> {
/// let store = es_postgres::PostgresStore::connect("postgres://postgres@127.0.0.1/test").await?;
/// let checkpoints = es_nats::postgres::relay_checkpoints(store.clone()).await?;
/// let relay = es_nats::Relay::new(store, checkpoints, jetstream, es_nats::StreamSettings::new("BANK", "bank"));
/// relay.run().await?;
/// # Ok(())
/// # }
/// ```
///
/// # Errors
/// Backend errors creating the table.
pub async fn relay_checkpoints(store: PostgresStore) -> Result<RelayCheckpoints, StoreError> {
    PostgresCheckpoints::new(store, NothingToWrite).await
}
