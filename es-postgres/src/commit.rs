//! Group commit: the appends of one process that are ready at the same moment share one
//! frontier update, one statement and one commit.
//!
//! The frontier serializes appends for the length of their commit (crate docs, "What it costs
//! writers"), so single-event appends from many tasks would each wait for the WAL flush of
//! every one before them. Instead, an append hands its rows and its expectation to the store's
//! committer task, which takes every append waiting at that moment (up to [`MAX_GROUP_ROWS`]
//! rows; it first yields to the writers the previous commit woke, so that they join) and
//! runs one statement for them all: it reads each stream's version, keeps the
//! appends whose expectation holds, inserts their rows at consecutive positions and answers
//! each (an append whose expectation did not hold is told so and writes nothing). Each append
//! stays all or nothing, and so does the group: if a unique index refuses any row (an id
//! already stored, a concurrent writer at the same version), nothing of the group is written
//! and every member tries again alone, where the store sorts out which it was.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use es_core::store::{BackendError, BackendErrorKind, CorruptProblem, Corruption};
use es_core::{ExpectedVersion, NewEvent, StoreError, StreamId};

use crate::error::{pg_error, unique_violation};
use crate::pool::{self, ConnectErrors, Pool};
use crate::rows;

/// The most rows one group statement carries.
const MAX_GROUP_ROWS: usize = 5_000;

/// How many times the committer lets other tasks run, gathering the appends they send, before
/// it commits a group (it stops early at a yield that brought none).
const MAX_GATHER_YIELDS: usize = 4;

/// One append, ready to insert: the statement checks its expectation and inserts it when it
/// holds.
pub(crate) struct Job {
    pub(crate) stream: StreamId,
    /// What the stream's version must be: `-1` for any, `0` for no stream, `n` for exactly `n`
    /// ([`expectation`]).
    pub(crate) expected: i64,
    pub(crate) events: Vec<NewEvent>,
    /// Each event's metadata as the JSON stored.
    pub(crate) metadata: Vec<String>,
}

/// `expected` as the statement takes it; `None` for a version PostgreSQL cannot hold (which
/// no stream can be at).
pub(crate) fn expectation(expected: ExpectedVersion) -> Option<i64> {
    match expected {
        ExpectedVersion::Any => Some(-1),
        ExpectedVersion::NoStream => Some(0),
        ExpectedVersion::Exact(version) => i64::try_from(version.0).ok(),
    }
}

/// How an insert went for one append.
pub(crate) enum Outcome {
    /// Committed at positions `first`, `first + 1`, … and stream versions `first_version`, ….
    Written { job: Job, first: u64, first_version: u64, recorded_at: SystemTime },
    /// The expectation did not hold for the stream in the statement's snapshot: nothing of
    /// this append was written (the store reads the stream again to tell a conflict).
    Refused(Job),
    /// A unique index refused a row of the statement (or, in a group, a row was refused as
    /// data): nothing was written.
    Collided(Job),
    /// Nothing was written (or, for a lost connection, it may have been: a retry with the same
    /// event ids tells).
    Failed(StoreError),
}

struct Request {
    job: Job,
    reply: oneshot::Sender<Outcome>,
}

/// The store's committer task, fed through a channel; it ends when the store is dropped.
pub(crate) struct Committer {
    requests: mpsc::UnboundedSender<Request>,
}

impl Committer {
    /// Starts the committer on the current Tokio runtime.
    ///
    /// # Errors
    /// A backend error outside a Tokio runtime.
    pub(crate) fn start(pool: Pool, errors: ConnectErrors, insert_sql: Arc<str>) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Handle::try_current().map_err(|error| {
            StoreError::from(
                BackendError::new(BackendErrorKind::Other, "PostgresStore needs a Tokio runtime: connect inside one")
                    .with_source(error),
            )
        })?;
        let (requests, receiver) = mpsc::unbounded_channel();
        runtime.spawn(run(pool, errors, insert_sql, receiver));
        Ok(Self { requests })
    }

    /// Inserts `job` with whatever other appends are waiting.
    pub(crate) async fn commit(&self, job: Job) -> Outcome {
        let (reply, answer) = oneshot::channel();
        if let Err(unsent) = self.requests.send(Request { job, reply }) {
            // The runtime that ran the committer is gone: the caller inserts alone.
            return Outcome::Collided(unsent.0.job);
        }
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) => Outcome::Failed(
                BackendError::new(
                    BackendErrorKind::Unavailable,
                    "the task that commits appends stopped before it answered; the append may have committed: retry \
                     it with the same event ids",
                )
                .into(),
            ),
        }
    }
}

async fn run(pool: Pool, errors: ConnectErrors, insert_sql: Arc<str>, mut receiver: mpsc::UnboundedReceiver<Request>) {
    while let Some(first) = receiver.recv().await {
        let mut rows = first.job.events.len();
        let mut group = vec![first];
        // The writers the last group answered are woken together, but the first of them to
        // run wakes this task before the others have sent their next appends: let them run
        // (a yield, no timer), so that they share this commit instead of waiting for the
        // next one. A yield that brought nothing ends the wait; a lone writer pays one yield.
        for _ in 0..MAX_GATHER_YIELDS {
            tokio::task::yield_now().await;
            let before = group.len();
            while rows < MAX_GROUP_ROWS {
                match receiver.try_recv() {
                    Ok(request) => {
                        rows += request.job.events.len();
                        group.push(request);
                    }
                    Err(_) => break,
                }
            }
            if group.len() == before || rows >= MAX_GROUP_ROWS {
                break;
            }
        }
        let recorded_at = rows::to_micros(SystemTime::now());
        let result = match pool::get(&pool, &errors, "cannot append events").await {
            Ok(client) => {
                let jobs: Vec<&Job> = group.iter().map(|request| &request.job).collect();
                let result = insert(&client, &insert_sql, &jobs, recorded_at).await;
                if let Err(InsertError::Pg(error)) = &result {
                    pool::release(client, error);
                }
                result
            }
            Err(error) => Err(InsertError::Pool(error)),
        };
        let (jobs, replies): (Vec<Job>, Vec<_>) = group.into_iter().map(|request| (request.job, request.reply)).unzip();
        for (outcome, reply) in outcomes(jobs, result, recorded_at).into_iter().zip(replies) {
            // A caller that stopped waiting learns nothing; a retry with its ids will.
            let _ = reply.send(outcome);
        }
    }
}

/// Inserts `job` alone on `client`.
pub(crate) async fn alone(client: &tokio_postgres::Client, insert_sql: &str, job: Job) -> Outcome {
    let recorded_at = rows::to_micros(SystemTime::now());
    let result = insert(client, insert_sql, &[&job], recorded_at).await;
    outcomes(vec![job], result, recorded_at).pop().unwrap_or_else(|| {
        Outcome::Failed(BackendError::new(BackendErrorKind::Other, "an append had no outcome").into())
    })
}

enum InsertError {
    Pg(tokio_postgres::Error),
    /// No connection came from the pool.
    Pool(StoreError),
    /// The statement inserted another number of rows than it kept, or answered in another
    /// shape: only possible when the `head` row is gone (then it inserted none).
    NoFrontier,
}

/// What the statement found for each job: whether its expectation held, in job order.
struct Inserted {
    /// The stream's version before the append, for each job.
    actual: Vec<u64>,
    admitted: Vec<bool>,
    /// The position before the first row inserted (when any was).
    base: u64,
}

/// One statement for every row of `jobs`: it checks each job's expectation, inserts the jobs
/// whose expectation holds and commits.
async fn insert(
    client: &tokio_postgres::Client,
    insert_sql: &str,
    jobs: &[&Job],
    recorded_at: SystemTime,
) -> Result<Inserted, InsertError> {
    let count: usize = jobs.iter().map(|job| job.events.len()).sum();
    let mut stream_types = Vec::with_capacity(jobs.len());
    let mut stream_ids = Vec::with_capacity(jobs.len());
    let mut expected = Vec::with_capacity(jobs.len());
    let mut of_job: Vec<i64> = Vec::with_capacity(count);
    let mut ids: Vec<Uuid> = Vec::with_capacity(count);
    let mut event_types = Vec::with_capacity(count);
    let mut schema_versions = Vec::with_capacity(count);
    let mut payloads = Vec::with_capacity(count);
    let mut metadata = Vec::with_capacity(count);
    for (index, job) in jobs.iter().enumerate() {
        stream_types.push(job.stream.stream_type());
        stream_ids.push(job.stream.id());
        expected.push(job.expected);
        // Jobs are numbered from 1, as `WITH ORDINALITY` numbers them.
        let number = i64::try_from(index + 1).unwrap_or(i64::MAX);
        for (event, meta) in job.events.iter().zip(&job.metadata) {
            of_job.push(number);
            ids.push(event.event_id);
            event_types.push(event.event.event_type.as_str());
            schema_versions.push(i64::from(event.event.schema_version));
            payloads.push(event.event.payload.as_str());
            metadata.push(meta.as_str());
        }
    }
    let params: [(&(dyn ToSql + Sync), Type); 10] = [
        (&recorded_at, Type::TIMESTAMPTZ),
        (&stream_types, Type::TEXT_ARRAY),
        (&stream_ids, Type::TEXT_ARRAY),
        (&expected, Type::INT8_ARRAY),
        (&of_job, Type::INT8_ARRAY),
        (&ids, Type::UUID_ARRAY),
        (&event_types, Type::TEXT_ARRAY),
        (&schema_versions, Type::INT8_ARRAY),
        (&payloads, Type::TEXT_ARRAY),
        (&metadata, Type::TEXT_ARRAY),
    ];
    let rows = client.query_typed(insert_sql, &params).await.map_err(InsertError::Pg)?;
    if rows.len() != jobs.len() {
        return Err(InsertError::NoFrontier);
    }
    let mut found =
        Inserted { actual: Vec::with_capacity(jobs.len()), admitted: Vec::with_capacity(jobs.len()), base: 0 };
    let mut wanted = 0usize;
    let mut inserted = 0i64;
    for (row, job) in rows.iter().zip(jobs) {
        let actual = rows::counter(row, 0, "events.stream_version").map_err(|_| InsertError::NoFrontier)?;
        let admitted: bool = row.try_get(1).map_err(|_| InsertError::NoFrontier)?;
        if admitted {
            wanted += job.events.len();
        }
        found.actual.push(actual);
        found.admitted.push(admitted);
        inserted = row.try_get(3).map_err(|_| InsertError::NoFrontier)?;
        if let Ok(Some(base)) = row.try_get::<_, Option<i64>>(2) {
            found.base = u64::try_from(base).map_err(|_| InsertError::NoFrontier)?;
        }
    }
    // Rows to insert and none inserted: the `head` row is gone (the frontier took nothing).
    if i64::try_from(wanted).ok() != Some(inserted) {
        return Err(InsertError::NoFrontier);
    }
    Ok(found)
}

/// What `result` means for each of `jobs`, in their order: the admitted ones got consecutive
/// positions after `base`, in job order.
fn outcomes(jobs: Vec<Job>, result: Result<Inserted, InsertError>, recorded_at: SystemTime) -> Vec<Outcome> {
    let context = "cannot append events";
    let several = jobs.len() > 1;
    match result {
        Ok(found) => {
            let mut next = found.base + 1;
            jobs.into_iter()
                .zip(found.actual.into_iter().zip(found.admitted))
                .map(|(job, (actual, admitted))| {
                    if !admitted {
                        return Outcome::Refused(job);
                    }
                    let first = next;
                    next += job.events.len() as u64;
                    Outcome::Written { job, first, first_version: actual + 1, recorded_at }
                })
                .collect()
        }
        Err(InsertError::Pg(error)) => match unique_violation(&error) {
            Some(Some(constraint)) if constraint == "events_pkey" => jobs
                .iter()
                .map(|_| {
                    Outcome::Failed(impossible_frontier(
                        "behind the stored positions (the `head` row of the store's schema was changed)",
                    ))
                })
                .collect(),
            Some(_) => jobs.into_iter().map(Outcome::Collided).collect(),
            // A value one append of a group holds that PostgreSQL refuses (a NUL in a stream
            // id, a version out of range) must not fail the others: each tries again alone.
            None if several && is_data_error(&error) => jobs.into_iter().map(Outcome::Collided).collect(),
            None => shared_failure(jobs.len(), pg_error(context, error)),
        },
        Err(InsertError::Pool(error)) => shared_failure(jobs.len(), error),
        Err(InsertError::NoFrontier) => jobs
            .iter()
            .map(|_| Outcome::Failed(impossible_frontier("missing (the `head` row of the store's schema is gone)")))
            .collect(),
    }
}

/// A data exception (SQLSTATE class 22): the statement refused a value it was given.
fn is_data_error(error: &tokio_postgres::Error) -> bool {
    error.code().is_some_and(|code| code.code().starts_with("22"))
}

/// `error` for the first of `count` appends that shared one statement, and the same kind and
/// message (without the driver's error, which is not `Clone`) for the others.
fn shared_failure(count: usize, error: StoreError) -> Vec<Outcome> {
    let (kind, context) = match &error {
        StoreError::Backend(backend) => (backend.kind(), backend.context().to_owned()),
        other => (BackendErrorKind::Other, other.to_string()),
    };
    let mut outcomes = vec![Outcome::Failed(error)];
    for _ in 1..count {
        outcomes.push(Outcome::Failed(BackendError::new(kind, context.clone()).into()));
    }
    outcomes
}

pub(crate) fn impossible_frontier(reason: &str) -> StoreError {
    StoreError::corrupt(Corruption::new(CorruptProblem::ImpossiblePosition { found: reason.to_owned() }))
}
