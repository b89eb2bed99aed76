//! The backend error this crate puts inside [`StoreError::Backend`]: what the store was doing,
//! and rusqlite's error as its source.

use std::fmt;

use es_core::StoreError;

/// A failed SQLite call and what it was for.
#[derive(Debug)]
struct SqliteError {
    context: String,
    source: rusqlite::Error,
}

impl fmt::Display for SqliteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.context, self.source)
    }
}

impl std::error::Error for SqliteError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// A backend error for `source`, explaining it with `context`.
pub(crate) fn sqlite_error(context: impl Into<String>, source: rusqlite::Error) -> StoreError {
    StoreError::backend(SqliteError { context: context.into(), source })
}

/// `.context("what we were doing")` on rusqlite results.
pub(crate) trait Context<T> {
    /// Turns an error into a [`StoreError::Backend`] that says what failed.
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| sqlite_error(context, source))
    }
}
