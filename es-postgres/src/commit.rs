//! Group commit: the appends of one process that are ready at the same moment share one
//! frontier update, one statement and one commit.
//!
//! The frontier serializes appends for the length of their commit (crate docs, "What it costs
//! writers"), so single-event appends from many tasks would each wait for the WAL flush of
//! every one before them. Instead, an append whose version check passed hands its rows to the
//! store's committer task, which takes every append waiting at that moment (up to
//! [`MAX_GROUP_ROWS`] rows), inserts them all in one statement at consecutive positions and
//! answers each. Each append stays all or nothing, and so does the group: if a unique index
//! refuses any row (an id already stored, a concurrent writer at the same version), nothing
//! of the group is written and every member tries again alone, where the store sorts out
//! which it was.

use std::sync::Arc;
use std::time::SystemTime;

use tokio::sync::{mpsc, oneshot};
use tokio_postgres::types::{ToSql, Type};
use uuid::Uuid;

use es_core::store::{BackendError, BackendErrorKind, CorruptProblem, Corruption};
use es_core::{NewEvent, StoreError, StreamId};

use crate::error::{pg_error, unique_violation};
use crate::pool::{self, ConnectErrors, Pool};
use crate::rows;

/// The most rows one group statement carries.
const MAX_GROUP_ROWS: usize = 5_000;

/// One append, checked and ready to insert.
pub(crate) struct Job {
    pub(crate) stream: StreamId,
    /// The version of the first event (the stream's version plus one).
    pub(crate) first_version: u64,
    pub(crate) events: Vec<NewEvent>,
    /// Each event's metadata as the JSON stored.
    pub(crate) metadata: Vec<String>,
}

/// How an insert went for one append.
pub(crate) enum Outcome {
    /// Committed at positions `first`, `first + 1`, ….
    Written { job: Job, first: u64, recorded_at: SystemTime },
    /// A unique index refused a row of the statement: nothing was written.
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
        while rows < MAX_GROUP_ROWS {
            match receiver.try_recv() {
                Ok(request) => {
                    rows += request.job.events.len();
                    group.push(request);
                }
                Err(_) => break,
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
    /// The statement inserted another number of rows than it was given: only possible when the
    /// `head` row is gone (then it inserted none).
    NoFrontier,
}

/// One statement for every row of `jobs`; the first position they got.
async fn insert(
    client: &tokio_postgres::Client,
    insert_sql: &str,
    jobs: &[&Job],
    recorded_at: SystemTime,
) -> Result<u64, InsertError> {
    let count: usize = jobs.iter().map(|job| job.events.len()).sum();
    let mut stream_types = Vec::with_capacity(count);
    let mut stream_ids = Vec::with_capacity(count);
    let mut versions = Vec::with_capacity(count);
    let mut ids: Vec<Uuid> = Vec::with_capacity(count);
    let mut event_types = Vec::with_capacity(count);
    let mut schema_versions = Vec::with_capacity(count);
    let mut payloads = Vec::with_capacity(count);
    let mut metadata = Vec::with_capacity(count);
    for job in jobs {
        for (offset, (event, meta)) in job.events.iter().zip(&job.metadata).enumerate() {
            stream_types.push(job.stream.stream_type());
            stream_ids.push(job.stream.id());
            // In range: the store checked the batch's last version against i64 before.
            versions.push(i64::try_from(job.first_version + offset as u64).unwrap_or(i64::MAX));
            ids.push(event.event_id);
            event_types.push(event.event.event_type.as_str());
            schema_versions.push(i64::from(event.event.schema_version));
            payloads.push(event.event.payload.as_str());
            metadata.push(meta.as_str());
        }
    }
    let count_value = i64::try_from(count).unwrap_or(i64::MAX);
    let params: [(&(dyn ToSql + Sync), Type); 10] = [
        (&count_value, Type::INT8),
        (&recorded_at, Type::TIMESTAMPTZ),
        (&stream_types, Type::TEXT_ARRAY),
        (&stream_ids, Type::TEXT_ARRAY),
        (&versions, Type::INT8_ARRAY),
        (&ids, Type::UUID_ARRAY),
        (&event_types, Type::TEXT_ARRAY),
        (&schema_versions, Type::INT8_ARRAY),
        (&payloads, Type::TEXT_ARRAY),
        (&metadata, Type::TEXT_ARRAY),
    ];
    let rows = client.query_typed(insert_sql, &params).await.map_err(InsertError::Pg)?;
    if rows.len() != count {
        return Err(InsertError::NoFrontier);
    }
    let mut first = u64::MAX;
    for row in &rows {
        let position = rows::counter(row, 0, "events.position").map_err(|_| InsertError::NoFrontier)?;
        first = first.min(position);
    }
    Ok(first)
}

/// What `result` means for each of `jobs`, in their order: the first got positions from
/// `first`, the next ones after it.
fn outcomes(jobs: Vec<Job>, result: Result<u64, InsertError>, recorded_at: SystemTime) -> Vec<Outcome> {
    let context = "cannot append events";
    match result {
        Ok(mut first) => jobs
            .into_iter()
            .map(|job| {
                let at = first;
                first += job.events.len() as u64;
                Outcome::Written { job, first: at, recorded_at }
            })
            .collect(),
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
            None => shared_failure(jobs.len(), pg_error(context, error)),
        },
        Err(InsertError::Pool(error)) => shared_failure(jobs.len(), error),
        Err(InsertError::NoFrontier) => jobs
            .iter()
            .map(|_| Outcome::Failed(impossible_frontier("missing (the `head` row of the store's schema is gone)")))
            .collect(),
    }
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
