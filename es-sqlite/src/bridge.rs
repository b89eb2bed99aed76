//! The bridge from the async [`EventStore`](es_core::EventStore) methods to SQLite's blocking
//! calls.

use es_core::StoreError;
use es_core::store::{BackendError, BackendErrorKind};

/// Runs `work` where blocking is allowed: on Tokio's blocking pool when called inside a Tokio
/// runtime (so that no async worker thread waits for the disk), inline otherwise (any other
/// executor, or none: the future then completes on its first poll).
///
/// The work runs to its end even when the future is dropped: an append commits or rolls back
/// as a whole either way.
pub(crate) async fn blocking<T, E, F>(work: F) -> Result<T, E>
where
    T: Send + 'static,
    E: From<StoreError> + Send + 'static,
    F: FnOnce() -> Result<T, E> + Send + 'static,
{
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => match runtime.spawn_blocking(work).await {
            Ok(result) => result,
            // A panic in the work is the caller's panic: let it go on unwinding there.
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            Err(error) => Err(E::from(
                BackendError::new(
                    BackendErrorKind::Other,
                    "the blocking task running an SQLite call was cancelled (the runtime is shutting down)",
                )
                .with_source(error)
                .into(),
            )),
        },
        Err(_) => work(),
    }
}
