//! The JetStream stream the relay publishes to: created when missing, checked when it exists.

use std::time::Duration;

use async_nats::jetstream::stream::{Config, RetentionPolicy, StorageType};
use async_nats::jetstream::{self, stream::Stream};

use crate::envelope::Subjects;

/// The JetStream stream events go to, as the relay and the consumers expect it.
#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// The stream's name (`BANK_EVENTS`): letters, digits, `-` and `_`.
    pub name: String,
    /// The subjects events are published on; the stream holds `<prefix>.>`.
    pub subjects: Subjects,
    /// How long JetStream remembers a message id to drop a duplicate: the longest a relay may
    /// be down between publishing an event and publishing it again (see the crate docs). At
    /// least [`StreamSettings::MIN_DUPLICATE_WINDOW`]; an existing stream's window must be at
    /// least this long.
    pub duplicate_window: Duration,
    /// The retention an existing stream must have, and a new one gets. `Limits` (the default)
    /// keeps events for every consumer; `Interest` drops them once every consumer acknowledged
    /// them; `WorkQueue` hands each to one consumer only and is refused (one read model would
    /// take events from another).
    pub retention: RetentionPolicy,
    /// How long a new stream keeps messages (zero: for ever). Not checked on an existing one.
    pub max_age: Duration,
    /// File (the default) or memory. Not checked on an existing one.
    pub storage: StorageType,
}

impl StreamSettings {
    /// The shortest duplicate window the relay accepts: twice its longest takeover time with
    /// the default lease (10 s), with room.
    pub const MIN_DUPLICATE_WINDOW: Duration = Duration::from_secs(60);

    /// A stream named `name` holding `<prefix>.>`, with a duplicate window of 2 minutes
    /// (JetStream's default), `Limits` retention, file storage and no age limit.
    pub fn new(name: impl Into<String>, prefix: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            subjects: Subjects::new(prefix),
            duplicate_window: Duration::from_secs(120),
            retention: RetentionPolicy::Limits,
            max_age: Duration::ZERO,
            storage: StorageType::File,
        }
    }

    /// The same settings with these subjects.
    #[must_use]
    pub fn with_subjects(mut self, subjects: Subjects) -> Self {
        self.subjects = subjects;
        self
    }

    /// The same settings with this duplicate window.
    #[must_use]
    pub fn with_duplicate_window(mut self, window: Duration) -> Self {
        self.duplicate_window = window;
        self
    }

    fn config(&self) -> Config {
        Config {
            name: self.name.clone(),
            subjects: vec![self.subjects.wildcard()],
            retention: self.retention,
            duplicate_window: self.duplicate_window,
            max_age: self.max_age,
            storage: self.storage,
            ..Config::default()
        }
    }
}

/// What is wrong with the JetStream stream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The settings themselves cannot work.
    #[error("stream `{stream}`: {problem}")]
    Settings {
        /// The stream.
        stream: String,
        /// What to change.
        problem: String,
    },
    /// The existing stream does not take every subject under the prefix.
    #[error(
        "stream `{stream}` holds subjects {found:?}, not `{expected}`: add `{expected}` to its subjects, or give the relay another stream name"
    )]
    Subjects {
        /// The stream.
        stream: String,
        /// What the relay publishes on.
        expected: String,
        /// What the stream holds.
        found: Vec<String>,
    },
    /// The existing stream has another retention policy.
    #[error(
        "stream `{stream}` has retention {found:?}, not {expected:?}: events would be dropped before some consumer read them; use another stream, or recreate it"
    )]
    Retention {
        /// The stream.
        stream: String,
        /// What the settings say.
        expected: RetentionPolicy,
        /// What the stream has.
        found: RetentionPolicy,
    },
    /// The existing stream's duplicate window is shorter than the settings need.
    #[error(
        "stream `{stream}` drops duplicates for {found:?} only, less than the {expected:?} a relay takeover needs: raise its duplicate_window (`nats stream edit {stream} --dupe-window {}s`)",
        expected.as_secs()
    )]
    DuplicateWindow {
        /// The stream.
        stream: String,
        /// What the settings say.
        expected: Duration,
        /// What the stream has.
        found: Duration,
    },
    /// JetStream refused or failed a request.
    #[error("stream `{stream}`: JetStream {doing} failed")]
    JetStream {
        /// The stream.
        stream: String,
        /// What was asked.
        doing: &'static str,
        /// The client's error.
        #[source]
        source: async_nats::Error,
    },
}

/// Creates the stream when it is missing; checks subjects, retention and duplicate window
/// when it exists.
pub(crate) async fn ensure(jetstream: &jetstream::Context, settings: &StreamSettings) -> Result<Stream, StreamError> {
    let stream = settings.name.clone();
    if settings.duplicate_window < StreamSettings::MIN_DUPLICATE_WINDOW {
        return Err(StreamError::Settings {
            stream,
            problem: format!(
                "a duplicate window of {:?} is shorter than the {:?} a relay takeover needs",
                settings.duplicate_window,
                StreamSettings::MIN_DUPLICATE_WINDOW
            ),
        });
    }
    if settings.retention == RetentionPolicy::WorkQueue {
        return Err(StreamError::Settings {
            stream,
            problem: "work-queue retention hands each event to one consumer only; use Limits or Interest".to_owned(),
        });
    }
    let jetstream_error =
        |doing, source: async_nats::Error| StreamError::JetStream { stream: settings.name.clone(), doing, source };
    let mut handle = jetstream
        .get_or_create_stream(settings.config())
        .await
        .map_err(|error| jetstream_error("get_or_create_stream", error.into()))?;
    let config = handle.info().await.map_err(|error| jetstream_error("stream info", error.into()))?.config.clone();
    let expected = settings.subjects.wildcard();
    if !config.subjects.iter().any(|subject| *subject == expected || subject == ">") {
        return Err(StreamError::Subjects { stream, expected, found: config.subjects });
    }
    if config.retention != settings.retention {
        return Err(StreamError::Retention { stream, expected: settings.retention, found: config.retention });
    }
    if config.duplicate_window < settings.duplicate_window {
        return Err(StreamError::DuplicateWindow {
            stream,
            expected: settings.duplicate_window,
            found: config.duplicate_window,
        });
    }
    Ok(handle)
}
