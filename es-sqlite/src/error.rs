//! rusqlite's errors as classified [`BackendError`]s: what the store was doing, how SQLite
//! failed (busy, full, read-only, …: whether a retry may help), and rusqlite's error as the
//! source, never repeated in the message and never carrying SQL text.

use std::borrow::Cow;
use std::io;
use std::path::Path;

use es_core::StoreError;
use es_core::store::{BackendError, BackendErrorKind, bounded};
use rusqlite::ErrorCode;

/// How SQLite failed.
pub(crate) fn classify(error: &rusqlite::Error) -> BackendErrorKind {
    match error.sqlite_error_code() {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => BackendErrorKind::Busy,
        Some(ErrorCode::DiskFull) => BackendErrorKind::StorageFull,
        Some(ErrorCode::ReadOnly) => BackendErrorKind::ReadOnly,
        Some(ErrorCode::PermissionDenied) => BackendErrorKind::PermissionDenied,
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => BackendErrorKind::NotADatabase,
        // SQLite says "unable to open database file" for a missing directory, a directory it may
        // not write in and more; at open the store looks closer (`open_error`).
        Some(ErrorCode::SystemIoFailure | ErrorCode::CannotOpen) => BackendErrorKind::Io,
        Some(ErrorCode::TooBig) => BackendErrorKind::OutOfRange,
        _ => BackendErrorKind::Other,
    }
}

/// rusqlite's error without SQL text and with a bounded message: a syntax error carries the
/// statement (which may hold a huge filter), and SQLite's own message is kept short.
fn sanitize(error: rusqlite::Error) -> rusqlite::Error {
    match error {
        rusqlite::Error::SqlInputError { error, msg, .. } => rusqlite::Error::SqliteFailure(error, Some(bounded(&msg))),
        rusqlite::Error::SqliteFailure(error, Some(message)) if message.len() > 200 => {
            rusqlite::Error::SqliteFailure(error, Some(bounded(&message)))
        }
        other => other,
    }
}

/// A classified backend error for `source`, explaining it with `context`.
pub(crate) fn sqlite_error(context: impl Into<Cow<'static, str>>, source: rusqlite::Error) -> StoreError {
    BackendError::new(classify(&source), context).with_source(sanitize(source)).into()
}

/// A [`StoreError::Backend`] for an error of rusqlite met in SQL of your own (in
/// [`SqliteStore::transaction`](crate::SqliteStore::transaction) or an
/// [`append_with`](crate::SqliteStore::append_with) hook), classified as the store's own are
/// (busy, full, read-only, …), so that [`StoreError::is_transient`] says whether a retry may
/// help. `context` says what was being done ("cannot update the balance view").
pub fn backend_error(context: impl Into<Cow<'static, str>>, error: rusqlite::Error) -> StoreError {
    sqlite_error(context, error)
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

/// A failure of the store itself (no SQLite error behind it).
pub(crate) fn store_failure(kind: BackendErrorKind, context: impl Into<Cow<'static, str>>) -> StoreError {
    BackendError::new(kind, context).into()
}

/// Why the database at `path` could not be opened, looked at closely: SQLite's "unable to
/// open database file" covers a missing directory, a directory this process may not write in
/// (SQLite creates the file, its `-wal` and its `-shm` beside it) and a read-only file.
pub(crate) fn open_error(path: &Path, error: rusqlite::Error) -> StoreError {
    let location = path.display();
    match error.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => BackendError::new(
            BackendErrorKind::NotADatabase,
            format!("`{location}` is not an SQLite database, so it cannot be opened as an event store"),
        )
        .with_source(sanitize(error))
        .into(),
        Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly | ErrorCode::PermissionDenied) => {
            let (kind, context) = diagnose(path);
            BackendError::new(kind, context).with_source(sanitize(error)).into()
        }
        _ => sqlite_error(format!("cannot open the event store `{location}`"), error),
    }
}

/// The error for a database file that SQLite could open for reading only.
pub(crate) fn read_only_file(path: &Path) -> StoreError {
    store_failure(BackendErrorKind::ReadOnly, read_only_message(path))
}

fn read_only_message(path: &Path) -> String {
    format!(
        "cannot open the event store `{}`: the database file is read-only (its permissions, an immutable \
         attribute or a read-only mount), and an event store must write; make it writable or open a copy",
        path.display()
    )
}

/// What keeps `path` from opening, as far as the file system tells.
fn diagnose(path: &Path) -> (BackendErrorKind, String) {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let location = path.display();
    if !directory.is_dir() {
        return (
            BackendErrorKind::Io,
            format!("cannot open the event store `{location}`: the directory `{}` does not exist", directory.display()),
        );
    }
    if path.exists() && std::fs::OpenOptions::new().write(true).open(path).is_err_and(|error| refused(&error)) {
        return (BackendErrorKind::ReadOnly, read_only_message(path));
    }
    if directory_refuses_files(directory) {
        return (
            BackendErrorKind::PermissionDenied,
            format!(
                "cannot open the event store `{location}`: the directory `{}` does not let this process create \
                 files, and SQLite keeps the database's journal (`-wal`, `-shm`) beside it; use a directory it may \
                 write in",
                directory.display()
            ),
        );
    }
    (BackendErrorKind::Io, format!("cannot open the event store `{location}`"))
}

/// Whether creating a file in `directory` is refused (tried with a file of a fresh name, removed
/// at once). Only run after SQLite failed to open a database there.
fn directory_refuses_files(directory: &Path) -> bool {
    let probe = directory.join(format!(".es-sqlite-probe-{}", uuid::Uuid::new_v4().simple()));
    match std::fs::OpenOptions::new().write(true).create_new(true).open(&probe) {
        Ok(file) => {
            drop(file);
            // Best effort: the probe is empty and has a name nobody else uses.
            let _ = std::fs::remove_file(&probe);
            false
        }
        Err(error) => refused(&error),
    }
}

fn refused(error: &io::Error) -> bool {
    matches!(error.kind(), io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_carry_no_sql_and_bounded_messages() {
        let sql = format!("SELECT * FROM events WHERE event_type IN ({})", "'x', ".repeat(60_000));
        let syntax = rusqlite::Error::SqlInputError {
            error: rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            msg: "near \"'x'\": syntax error".to_owned(),
            sql,
            offset: 42,
        };
        assert!(syntax.to_string().len() > 300_000, "rusqlite quotes the statement");
        let error = sqlite_error("cannot read all events", syntax);
        let source = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
        assert!(source.contains("syntax error") && !source.contains("SELECT"), "{source}");

        let long = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_ERROR),
            Some("y".repeat(100_000)),
        );
        let error = sqlite_error("cannot read all events", long);
        let source = std::error::Error::source(&error).map(ToString::to_string).unwrap_or_default();
        assert!(source.len() < 400, "{}", source.len());
    }

    #[test]
    fn sqlite_codes_are_classified() {
        let kind = |code| classify(&rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None));
        assert_eq!(kind(rusqlite::ffi::SQLITE_BUSY), BackendErrorKind::Busy);
        assert_eq!(kind(rusqlite::ffi::SQLITE_LOCKED), BackendErrorKind::Busy);
        assert_eq!(kind(rusqlite::ffi::SQLITE_FULL), BackendErrorKind::StorageFull);
        assert_eq!(kind(rusqlite::ffi::SQLITE_READONLY), BackendErrorKind::ReadOnly);
        assert_eq!(kind(rusqlite::ffi::SQLITE_NOTADB), BackendErrorKind::NotADatabase);
        assert_eq!(kind(rusqlite::ffi::SQLITE_IOERR), BackendErrorKind::Io);
        assert!(kind(rusqlite::ffi::SQLITE_BUSY).is_transient());
        assert!(
            !kind(rusqlite::ffi::SQLITE_FULL).is_transient() && !kind(rusqlite::ffi::SQLITE_READONLY).is_transient()
        );
    }
}
