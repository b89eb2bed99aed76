//! The store-author kit: the rules of the contract that do not depend on the storage, written
//! once so that every store applies them alike. A store is then mostly SQL and mapping.
//!
//! - [`check_batch`] before writing: ids unique in the batch, payloads that read back.
//! - [`resolve_retry`]: which batches are retries of a committed append.
//! - [`check_stream_page`] on every stream read: versions from where asked, without gaps.
//! - [`check_all_page`] on every read of all events: positions that increase.
//! - [`StreamPages`]: reading a stream page by page.

use std::collections::HashSet;

use serde::de::IgnoredAny;
use uuid::Uuid;

use super::{
    CorruptProblem, Corruption, EventStore, NewEvent, PayloadProblem, Position, StoreError, StoredEvent, StreamId,
    Version,
};

/// How deep arrays and objects may nest in a payload: what serde_json reads back (its
/// recursion limit of 128 lets 127 levels through). A deeper payload would commit and then
/// never decode.
pub const MAX_PAYLOAD_DEPTH: usize = 127;

/// Checks a batch before anything is written: no id twice, every payload JSON that the
/// decoder reads back (not nested deeper than [`MAX_PAYLOAD_DEPTH`]).
///
/// # Errors
/// [`StoreError::DuplicateIdInBatch`] and [`StoreError::InvalidEvent`].
pub fn check_batch(batch: &[NewEvent]) -> Result<(), StoreError> {
    if batch.len() > 1 {
        let mut seen = HashSet::with_capacity(batch.len());
        if let Some(event) = batch.iter().find(|event| !seen.insert(event.event_id)) {
            return Err(StoreError::DuplicateIdInBatch { event_id: event.event_id });
        }
    }
    for event in batch {
        check_payload(&event.event.payload).map_err(|problem| StoreError::InvalidEvent {
            event_id: event.event_id,
            event_type: super::error::bounded(&event.event.event_type),
            problem,
        })?;
    }
    Ok(())
}

/// Whether `payload` is JSON the decoder reads back.
///
/// # Errors
/// The [`PayloadProblem`].
pub fn check_payload(payload: &str) -> Result<(), PayloadProblem> {
    // The same parser as decoding: what passes here is JSON (whether it fits the event's
    // struct is the decoder's business). `IgnoredAny` does not count depth, so that is
    // measured apart, against the limit the decoder applies.
    if let Err(error) = serde_json::from_str::<IgnoredAny>(payload) {
        return Err(PayloadProblem::NotJson { reason: super::error::bounded(&error.to_string()) });
    }
    // Valid JSON nested deeper than the limit has more than twice as many bytes as it.
    if payload.len() > 2 * MAX_PAYLOAD_DEPTH && nesting_depth(payload) > MAX_PAYLOAD_DEPTH {
        return Err(PayloadProblem::TooDeep { limit: MAX_PAYLOAD_DEPTH });
    }
    Ok(())
}

/// The deepest nesting of arrays and objects in valid JSON text (brackets inside strings do
/// not count).
fn nesting_depth(json: &str) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in json.bytes() {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// The idempotency rule every store applies before appending.
///
/// `existing[i]` is what the store holds under `batch[i].event_id`, if anything (a store may
/// look up only the batch's first id when none of the others can be stored without it, but
/// the lookup of all ids in one query is as cheap). Returns the stored events when the batch
/// is a retry of an append that committed (every id stored in `stream` at consecutive versions
/// with the same content), `None` when no id is stored yet.
///
/// # Errors
/// [`StoreError::EventIdReused`] for any other overlap with stored ids, naming the first id
/// that is stored and where it is.
pub fn resolve_retry(
    stream: &StreamId,
    batch: &[NewEvent],
    existing: Vec<Option<StoredEvent>>,
) -> Result<Option<Vec<StoredEvent>>, StoreError> {
    if existing.iter().all(Option::is_none) {
        return Ok(None);
    }
    let whole = existing.len() == batch.len() && existing.iter().all(Option::is_some);
    let first_version = existing.first().and_then(Option::as_ref).map(|found| found.stream_version.0);
    let fits = |offset: usize, event: &NewEvent, found: &StoredEvent| {
        whole
            && found.stream == *stream
            && first_version.map(|first| first + offset as u64) == Some(found.stream_version.0)
            && event.same_content_as(found)
    };
    for (offset, (event, found)) in batch.iter().zip(&existing).enumerate() {
        if let Some(found) = found
            && !fits(offset, event, found)
        {
            return Err(StoreError::EventIdReused {
                event_id: event.event_id,
                existing_stream: found.stream.clone(),
                existing_version: found.stream_version,
            });
        }
    }
    Ok(Some(existing.into_iter().flatten().collect()))
}

/// The first version a read of `stream` from `from` must return (1 for `from` 0).
#[must_use]
pub fn first_wanted(from: Version) -> Version {
    if from == Version::NONE { Version(1) } else { from }
}

/// Checks a page of `stream` read from version `from`: every event in the stream, versions
/// starting at `from` (1 for `from` 0) and rising by one.
///
/// A store reading from version 1 should select without a lower bound on the version, so
/// that a row at version 0 or below reaches this check instead of being filtered out.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the stream and the version.
pub fn check_stream_page(stream: &StreamId, from: Version, page: &[StoredEvent]) -> Result<(), StoreError> {
    check_stream_records(stream, from, page)
}

/// [`check_stream_page`] over records wherever they are held.
pub(crate) fn check_stream_records<'a>(
    stream: &StreamId,
    from: Version,
    page: impl IntoIterator<Item = &'a StoredEvent>,
) -> Result<(), StoreError> {
    let mut expected = first_wanted(from);
    let mut previous: Option<&StreamId> = None;
    for event in page {
        // The name the previous event held, shared: equal without comparing the text again.
        let known = previous.is_some_and(|previous| previous.shares_text_with(&event.stream));
        previous = Some(&event.stream);
        if !known && event.stream != *stream {
            return Err(StoreError::corrupt(
                Corruption::new(CorruptProblem::Unreadable {
                    field: "stream".into(),
                    reason: format!("holds {} where {stream} was read", event.stream),
                })
                .in_stream(stream)
                .at_version(event.stream_version)
                .at_position(event.position),
            ));
        }
        if event.stream_version != expected {
            return Err(version_gap(stream, expected, &event.stream_version.to_string(), Some(event.position)));
        }
        expected = expected.next();
    }
    Ok(())
}

/// The corruption of a stream whose version `expected` is missing and `found` (as stored: it
/// may be 0, negative or NULL) comes instead.
#[must_use]
pub fn version_gap(stream: &StreamId, expected: Version, found: &str, position: Option<Position>) -> StoreError {
    let mut corruption = Corruption::new(CorruptProblem::VersionGap { expected, found: found.to_owned() })
        .in_stream(stream)
        .at_version(expected);
    corruption.position = position;
    StoreError::corrupt(corruption)
}

/// Checks a page of a read of all events that resumed after position `after`: positions
/// above it, rising, none 0; every stream version at least 1.
///
/// # Errors
/// [`StoreError::Corrupt`] naming the position and stream.
pub fn check_all_page(after: Position, page: &[StoredEvent]) -> Result<(), StoreError> {
    let mut previous = after;
    for event in page {
        if event.position.0 == 0 {
            return Err(StoreError::corrupt(
                Corruption::new(CorruptProblem::ImpossiblePosition { found: "0".to_owned() })
                    .in_stream(&event.stream)
                    .at_version(event.stream_version),
            ));
        }
        if event.position <= previous {
            return Err(StoreError::corrupt(
                Corruption::new(CorruptProblem::PositionOutOfOrder { previous, found: event.position })
                    .in_stream(&event.stream)
                    .at_version(event.stream_version)
                    .at_position(event.position),
            ));
        }
        if event.stream_version == Version::NONE {
            return Err(version_gap(&event.stream, Version(1), "0", Some(event.position)));
        }
        previous = event.position;
    }
    Ok(())
}

/// Reads one stream page by page: `while let Some(page) = pages.next_page().await? { … }`.
pub struct StreamPages<'a, S> {
    store: &'a S,
    stream: StreamId,
    next: Version,
    page_size: usize,
    done: bool,
}

impl<'a, S: EventStore> StreamPages<'a, S> {
    /// Pages of `page_size` events of `stream`, from version `from`.
    pub fn new(store: &'a S, stream: StreamId, from: Version, page_size: usize) -> Self {
        Self { store, stream, next: first_wanted(from), page_size: page_size.max(1), done: false }
    }

    /// The next page, or `None` after the last event.
    ///
    /// # Errors
    /// Whatever [`EventStore::read_stream`] returns, and [`StoreError::Corrupt`] when a page
    /// does not continue where the last one ended.
    pub async fn next_page(&mut self) -> Result<Option<Vec<StoredEvent>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        let page = self.store.read_stream(&self.stream, self.next, self.page_size).await?;
        // Checked here too: a store that forgot the check must not fold a gap into a state.
        check_stream_page(&self.stream, self.next, &page)?;
        if page.len() < self.page_size {
            self.done = true;
        }
        match page.last() {
            Some(last) => {
                self.next = last.stream_version.next();
                Ok(Some(page))
            }
            None => Ok(None),
        }
    }
}

/// The ids of a batch, for a store that looks them all up in one query.
#[must_use]
pub fn batch_ids(batch: &[NewEvent]) -> Vec<Uuid> {
    batch.iter().map(|event| event.event_id).collect()
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::record::{Metadata, RawEvent};

    fn new_event(n: u64) -> NewEvent {
        NewEvent::new(RawEvent::new("Happened", 1, format!(r#"{{"n":{n}}}"#)))
    }

    fn stored(stream: &StreamId, version: u64, event: &NewEvent) -> StoredEvent {
        StoredEvent {
            position: Position(version),
            stream: stream.clone(),
            stream_version: Version(version),
            event_id: event.event_id,
            metadata: event.metadata.clone(),
            recorded_at: SystemTime::UNIX_EPOCH,
            event: event.event.clone(),
        }
    }

    #[test]
    fn a_whole_batch_stored_as_sent_is_a_retry() {
        let s = StreamId::new("T", "1");
        let batch = vec![new_event(1), new_event(2)];
        let existing = vec![Some(stored(&s, 4, &batch[0])), Some(stored(&s, 5, &batch[1]))];
        let found = resolve_retry(&s, &batch, existing).unwrap().unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(resolve_retry(&s, &batch, vec![None, None]).unwrap(), None);
    }

    #[test]
    fn a_payload_stored_as_other_json_text_of_the_same_value_is_a_retry() {
        let s = StreamId::new("T", "1");
        let batch = vec![NewEvent::new(RawEvent::new("A", 1, r#"{"a":1,"b":2}"#))];
        let mut as_stored = stored(&s, 1, &batch[0]);
        as_stored.event.payload = r#"{"b": 2, "a": 1}"#.to_owned();
        assert!(resolve_retry(&s, &batch, vec![Some(as_stored)]).unwrap().is_some());
    }

    #[test]
    fn any_other_overlap_names_the_stored_id_and_where_it_is() {
        let s = StreamId::new("T", "1");
        let batch = vec![new_event(1), new_event(2)];
        // Only the second id stored.
        match resolve_retry(&s, &batch, vec![None, Some(stored(&s, 9, &batch[1]))]) {
            Err(StoreError::EventIdReused { event_id, existing_version, .. }) => {
                assert_eq!((event_id, existing_version), (batch[1].event_id, Version(9)));
            }
            other => panic!("{other:?}"),
        }
        // Other content.
        let mut changed = stored(&s, 1, &batch[0]);
        changed.metadata = Metadata::new().with_header("x", "y");
        assert!(resolve_retry(&s, &batch[..1], vec![Some(changed)]).is_err());
        // Another stream.
        let other = StreamId::new("T", "2");
        assert!(resolve_retry(&s, &batch[..1], vec![Some(stored(&other, 1, &batch[0]))]).is_err());
        // Not consecutive.
        let existing = vec![Some(stored(&s, 1, &batch[0])), Some(stored(&s, 3, &batch[1]))];
        assert!(resolve_retry(&s, &batch, existing).is_err());
    }

    #[test]
    fn batches_with_a_repeated_id_or_an_unreadable_payload_are_refused() {
        let one = new_event(1);
        assert!(matches!(check_batch(&[one.clone(), one]), Err(StoreError::DuplicateIdInBatch { .. })));
        let not_json = NewEvent::new(RawEvent::new("A", 1, "{not json"));
        assert!(matches!(
            check_batch(&[not_json]),
            Err(StoreError::InvalidEvent { problem: PayloadProblem::NotJson { .. }, .. })
        ));
        let deep = format!("{}{}", "[".repeat(MAX_PAYLOAD_DEPTH + 1), "]".repeat(MAX_PAYLOAD_DEPTH + 1));
        assert!(matches!(
            check_batch(&[NewEvent::new(RawEvent::new("A", 1, deep))]),
            Err(StoreError::InvalidEvent { problem: PayloadProblem::TooDeep { .. }, .. })
        ));
        let deepest = format!("{}{}", "[".repeat(MAX_PAYLOAD_DEPTH), "]".repeat(MAX_PAYLOAD_DEPTH));
        assert!(check_batch(&[NewEvent::new(RawEvent::new("A", 1, deepest.clone()))]).is_ok());
        // What passes the check decodes; one level more does not.
        assert!(serde_json::from_str::<serde_json::Value>(&deepest).is_ok());
        let deeper = format!("[{deepest}]");
        assert!(serde_json::from_str::<serde_json::Value>(&deeper).is_err());
        // Brackets inside strings are text.
        let text = format!(r#"{{"a":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(check_payload(&text).is_ok());
    }

    #[test]
    fn stream_pages_must_start_where_asked_and_have_no_gap() {
        let s = StreamId::new("T", "1");
        let page =
            |versions: &[u64]| -> Vec<StoredEvent> { versions.iter().map(|&v| stored(&s, v, &new_event(v))).collect() };
        assert!(check_stream_page(&s, Version(0), &page(&[1, 2, 3])).is_ok());
        assert!(check_stream_page(&s, Version(3), &page(&[3, 4])).is_ok());
        for (from, versions) in [(1, &[1, 2, 5][..]), (1, &[2, 3]), (1, &[0, 1]), (4, &[5])] {
            let error = check_stream_page(&s, Version(from), &page(versions)).unwrap_err();
            let corruption = error.corruption().expect("corrupt");
            assert_eq!(corruption.stream.as_ref(), Some(&s));
            assert!(matches!(corruption.problem, CorruptProblem::VersionGap { .. }), "{versions:?}");
        }
    }

    #[test]
    fn read_all_pages_must_rise() {
        let s = StreamId::new("T", "1");
        let mut events: Vec<StoredEvent> = (1..=3).map(|v| stored(&s, v, &new_event(v))).collect();
        assert!(check_all_page(Position(0), &events).is_ok());
        assert!(check_all_page(Position(1), &events).is_err());
        events[2].position = Position(2);
        assert!(check_all_page(Position(0), &events).is_err());
    }
}
