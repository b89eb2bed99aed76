//! Turning tokio-postgres and pool errors into classified [`StoreError`]s: a
//! [`BackendErrorKind`] a caller can act on (is it transient? the credentials? a full disk?),
//! a context that says what the store was doing, and the driver's error as the source, never
//! repeated in the message. No message carries SQL, a parameter or a password.

use std::borrow::Cow;
use std::error::Error as _;

use tokio_postgres::error::SqlState;

use es_core::StoreError;
use es_core::store::{BackendError, BackendErrorKind};

/// How PostgreSQL (or the way to it) failed.
pub(crate) fn classify(error: &tokio_postgres::Error) -> BackendErrorKind {
    if let Some(code) = error.code() {
        return classify_code(code);
    }
    if error.is_closed() || has_io_source(error) {
        return BackendErrorKind::Unavailable;
    }
    // The driver's kinds are private; its messages for them are fixed texts.
    let message = error.to_string();
    if message.starts_with("error connecting") || message.starts_with("timeout") {
        BackendErrorKind::Unavailable
    } else if message.starts_with("authentication") {
        BackendErrorKind::Authentication
    } else {
        BackendErrorKind::Other
    }
}

fn has_io_source(error: &tokio_postgres::Error) -> bool {
    let mut source = error.source();
    while let Some(inner) = source {
        if inner.is::<std::io::Error>() {
            return true;
        }
        source = inner.source();
    }
    false
}

/// The kind of a server error, by SQLSTATE.
fn classify_code(code: &SqlState) -> BackendErrorKind {
    let class = &code.code()[..2.min(code.code().len())];
    if *code == SqlState::INVALID_PASSWORD || *code == SqlState::INVALID_AUTHORIZATION_SPECIFICATION {
        BackendErrorKind::Authentication
    } else if *code == SqlState::INVALID_CATALOG_NAME {
        BackendErrorKind::NotADatabase
    } else if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
    {
        BackendErrorKind::Busy
    } else if *code == SqlState::DISK_FULL || *code == SqlState::OUT_OF_MEMORY {
        BackendErrorKind::StorageFull
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        BackendErrorKind::ReadOnly
    } else if *code == SqlState::INSUFFICIENT_PRIVILEGE {
        BackendErrorKind::PermissionDenied
    } else if *code == SqlState::NUMERIC_VALUE_OUT_OF_RANGE
        || *code == SqlState::CHARACTER_NOT_IN_REPERTOIRE
        || *code == SqlState::UNTRANSLATABLE_CHARACTER
        || *code == SqlState::PROGRAM_LIMIT_EXCEEDED
    {
        BackendErrorKind::OutOfRange
    } else {
        match class {
            // Connection exceptions, insufficient resources (too many connections), operator
            // intervention (admin shutdown, cannot connect now).
            "08" | "53" | "57" => BackendErrorKind::Unavailable,
            "58" => BackendErrorKind::Io,
            _ => BackendErrorKind::Other,
        }
    }
}

/// A classified backend error for `source`, explaining it with `context`.
pub(crate) fn pg_error(context: impl Into<Cow<'static, str>>, source: tokio_postgres::Error) -> StoreError {
    BackendError::new(classify(&source), context).with_source(source).into()
}

/// A backend error of `kind` with no driver error behind it.
pub(crate) fn backend(kind: BackendErrorKind, context: impl Into<Cow<'static, str>>) -> StoreError {
    BackendError::new(kind, context).into()
}

/// `.context("what we were doing")` on tokio-postgres results.
pub(crate) trait Context<T> {
    /// Turns an error into a classified [`StoreError::Backend`] that says what failed.
    fn context(self, context: &'static str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, tokio_postgres::Error> {
    fn context(self, context: &'static str) -> Result<T, StoreError> {
        self.map_err(|source| pg_error(context, source))
    }
}

/// Whether `error` is a unique violation, and of which constraint.
pub(crate) fn unique_violation(error: &tokio_postgres::Error) -> Option<Option<String>> {
    let db = error.as_db_error()?;
    (*db.code() == SqlState::UNIQUE_VIOLATION).then(|| db.constraint().map(str::to_owned))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlstates_map_to_kinds() {
        for (code, kind) in [
            (SqlState::INVALID_PASSWORD, BackendErrorKind::Authentication),
            (SqlState::INVALID_CATALOG_NAME, BackendErrorKind::NotADatabase),
            (SqlState::T_R_SERIALIZATION_FAILURE, BackendErrorKind::Busy),
            (SqlState::TOO_MANY_CONNECTIONS, BackendErrorKind::Unavailable),
            (SqlState::ADMIN_SHUTDOWN, BackendErrorKind::Unavailable),
            (SqlState::CONNECTION_FAILURE, BackendErrorKind::Unavailable),
            (SqlState::DISK_FULL, BackendErrorKind::StorageFull),
            (SqlState::READ_ONLY_SQL_TRANSACTION, BackendErrorKind::ReadOnly),
            (SqlState::CHARACTER_NOT_IN_REPERTOIRE, BackendErrorKind::OutOfRange),
            (SqlState::SYNTAX_ERROR, BackendErrorKind::Other),
        ] {
            assert_eq!(classify_code(&code), kind, "{}", code.code());
        }
    }
}
