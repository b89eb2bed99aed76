//! The bb8 pool: handing out connections with a bounded wait, keeping lost connections out of
//! it, and saying why no connection came (every one busy, or none could be opened).
//!
//! bb8 opens connections in the background and reports their failures only to its error
//! sink, so a call that waits for a connection the server refuses would only learn that its
//! wait ran out. The pools [`crate::PostgresStore::connect_with`] builds record the last such
//! failure ([`ConnectErrors`]), and a wait that ran out after one is reported as that failure
//! (`Unavailable`, `Authentication`, …) rather than as a busy pool.

use std::borrow::Cow;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use bb8::{ErrorSink, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use tokio_postgres::NoTls;

use es_core::StoreError;
use es_core::store::{BackendError, BackendErrorKind};

use crate::error::{classify, pg_error};

/// The pool the store draws from.
pub(crate) type Pool = bb8::Pool<PostgresConnectionManager<NoTls>>;

/// A connection taken from the pool; back to it (or, when closed, out of it) when dropped.
pub(crate) type Conn = PooledConnection<'static, PostgresConnectionManager<NoTls>>;

/// A connection failure and when it happened.
type Failure = (Instant, Arc<tokio_postgres::Error>);

/// The last error bb8 met opening a connection in the background, and when.
#[derive(Debug, Clone, Default)]
pub(crate) struct ConnectErrors {
    last: Arc<Mutex<Option<Failure>>>,
}

impl ConnectErrors {
    /// The last connection failure since `start`.
    fn since(&self, start: Instant) -> Option<Arc<tokio_postgres::Error>> {
        let last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        last.as_ref().filter(|(at, _)| *at >= start).map(|(_, error)| Arc::clone(error))
    }
}

impl ErrorSink<tokio_postgres::Error> for ConnectErrors {
    fn sink(&self, error: tokio_postgres::Error) {
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((Instant::now(), Arc::new(error)));
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(self.clone())
    }
}

/// A pool of at most `max_size` connections to `config`, whose calls wait at most
/// `wait_timeout` for one. Connections are not tested on check-out (a round trip per call):
/// a connection is checked with `is_closed` when taken ([`get`]) and when given back (bb8),
/// and one an error showed lost is kept out of the pool ([`release`]).
pub(crate) fn build(
    config: tokio_postgres::Config,
    max_size: usize,
    wait_timeout: Duration,
    errors: &ConnectErrors,
) -> Pool {
    bb8::Pool::builder()
        .max_size(u32::try_from(max_size.max(1)).unwrap_or(u32::MAX))
        // bb8 refuses a zero timeout.
        .connection_timeout(wait_timeout.max(Duration::from_millis(1)))
        .test_on_check_out(false)
        // Connections live until they fail, as they did before (bb8 would recycle them).
        .max_lifetime(None)
        .idle_timeout(None)
        .error_sink(Box::new(errors.clone()))
        .build_unchecked(PostgresConnectionManager::new(config, NoTls))
}

/// A connection of `pool` that is not known to be closed, waiting at most the pool's timeout.
///
/// # Errors
/// [`BackendErrorKind::PoolTimeout`] when every connection stayed busy, or the classified
/// error of the last connection bb8 failed to open meanwhile.
pub(crate) async fn get(pool: &Pool, errors: &ConnectErrors, context: &'static str) -> Result<Conn, StoreError> {
    let started = Instant::now();
    // Every closed connection given back leaves the pool, so there are at most `max_size`.
    let tries = pool.state().connections as usize + 2;
    for _ in 0..tries {
        match pool.get_owned().await {
            Ok(client) if client.is_closed() => drop(client),
            Ok(client) => return Ok(client),
            Err(RunError::User(error)) => return Err(pg_error(context, error)),
            Err(RunError::TimedOut) => return Err(timeout_error(context, errors.since(started))),
        }
    }
    Err(BackendError::new(BackendErrorKind::Unavailable, format!("{context}: every connection of the pool was closed"))
        .into())
}

fn timeout_error(context: impl Into<Cow<'static, str>>, failure: Option<Arc<tokio_postgres::Error>>) -> StoreError {
    let context = context.into();
    match failure {
        Some(error) => BackendError::new(
            classify(&error),
            format!("{context}: no connection of the pool was free and none could be opened within its wait timeout"),
        )
        .with_source(error)
        .into(),
        None => BackendError::new(
            BackendErrorKind::PoolTimeout,
            format!("{context}: every connection of the pool stayed busy for longer than its wait timeout"),
        )
        .into(),
    }
}

/// Gives `client` back after `error`, keeping it out of the pool when `error` says its
/// connection is gone (the server ended it, the network failed): bb8 drops closed connections
/// it is given back, but the driver may not have seen the end of the connection yet, so such
/// a connection is held (for at most a second) until it has.
pub(crate) fn release(client: Conn, error: &tokio_postgres::Error) {
    if classify(error) != BackendErrorKind::Unavailable || client.is_closed() {
        return;
    }
    tokio::spawn(async move {
        let deadline = Instant::now() + Duration::from_secs(1);
        while !client.is_closed() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(client);
    });
}
