//! rusqlite's errors as classified [`BackendError`]s: what the store was doing, how SQLite
//! failed (busy, full, read-only, …: whether a retry may help), and rusqlite's error as the
//! source, never repeated in the message.

use std::borrow::Cow;

use es_core::StoreError;
use es_core::store::{BackendError, BackendErrorKind};
use rusqlite::ErrorCode;

/// How SQLite failed.
pub(crate) fn classify(error: &rusqlite::Error) -> BackendErrorKind {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => BackendErrorKind::Busy,
        Some(ErrorCode::DiskFull) => BackendErrorKind::StorageFull,
        Some(ErrorCode::ReadOnly) => BackendErrorKind::ReadOnly,
        Some(ErrorCode::PermissionDenied | ErrorCode::CannotOpen) => BackendErrorKind::PermissionDenied,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => BackendErrorKind::NotADatabase,
        Some(ErrorCode::SystemIoFailure) => BackendErrorKind::Io,
        Some(ErrorCode::TooBig) => BackendErrorKind::OutOfRange,
        _ => BackendErrorKind::Other,
    }
}

/// A classified backend error for `source`, explaining it with `context`.
pub(crate) fn sqlite_error(context: impl Into<Cow<'static, str>>, source: rusqlite::Error) -> StoreError {
    BackendError::new(classify(&source), context).with_source(source).into()
}

/// `.context("what we were doing")` on rusqlite results.
pub(crate) trait Context<T> {
    /// Turns an error into a classified [`StoreError::Backend`] that says what failed.
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| sqlite_error(context, source))
    }
}
