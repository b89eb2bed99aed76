//! Commit notifications across processes: every append that writes sends `NOTIFY` on the
//! schema's channel in its own transaction (so it is delivered at commit, once per commit),
//! and a background task LISTENs on one dedicated connection and fires the store's
//! [`CommitSignal`].
//!
//! The listener reconnects after a lost connection, with a backoff of up to
//! [`MAX_BACKOFF`], and fires the signal once each time it is listening again: a notification
//! sent while it was away is never waited for.

use std::future::Future;
use std::pin::pin;
use std::task::Poll;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_postgres::{AsyncMessage, NoTls};

use es_core::store::CommitSignal;

/// The longest wait between two attempts to reconnect the listener.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The channel appends to `schema` notify: `es_commits_<schema>` when that fits PostgreSQL's
/// 63 bytes, otherwise the start of it and a hash of the whole schema name.
pub(crate) fn channel(schema: &str) -> String {
    const PREFIX: &str = "es_commits_";
    let full = format!("{PREFIX}{schema}");
    if full.len() <= 63 {
        return full;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in schema.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    // Schema names are ASCII (a checked identifier): any byte is a character boundary.
    format!("{}_{hash:016x}", &full[..63 - 17])
}

/// The `application_name` of the listener's connection (`pg_stat_activity` shows it).
pub(crate) fn application_name(schema: &str) -> String {
    let name = format!("es listener {schema}");
    name[..name.len().min(63)].to_owned()
}

/// The listening task; stopped when dropped (with the store).
#[derive(Debug)]
pub(crate) struct Listener {
    task: JoinHandle<()>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Listener {
    /// Starts listening on `channel` through a connection of its own to `config` (not one of
    /// the pool's: a pooled connection goes to other calls, and LISTEN is session state),
    /// firing `signal` on every notification.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        mut config: tokio_postgres::Config,
        schema: &str,
        signal: CommitSignal,
    ) -> Self {
        // A connection that died silently (a network partition) is noticed within a minute.
        config
            .application_name(application_name(schema))
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(20))
            .keepalives_interval(Duration::from_secs(10))
            .keepalives_retries(3);
        let listen = format!("LISTEN \"{}\"", channel(schema));
        Self { task: runtime.spawn(listen_forever(config, listen, signal)) }
    }
}

async fn listen_forever(config: tokio_postgres::Config, listen: String, signal: CommitSignal) {
    let mut backoff = Duration::from_millis(50);
    loop {
        if let Ok((client, connection)) = config.connect(NoTls).await {
            if listen_on(&client, connection, &listen, &signal).await {
                backoff = Duration::from_millis(50);
            }
            drop(client);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Listens on one connection until it ends; whether LISTEN succeeded on it.
async fn listen_on(
    client: &tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<tokio_postgres::Socket, tokio_postgres::tls::NoTlsStream>,
    listen: &str,
    signal: &CommitSignal,
) -> bool {
    enum Event {
        Listened(bool),
        Notified,
        Ended,
    }
    let mut request = pin!(client.batch_execute(listen));
    let mut listening = false;
    loop {
        // The connection carries the LISTEN request and its answer, then the notifications:
        // both are driven by polling it.
        let event = std::future::poll_fn(|cx| {
            if !listening && let Poll::Ready(result) = request.as_mut().poll(cx) {
                return Poll::Ready(Event::Listened(result.is_ok()));
            }
            loop {
                match connection.poll_message(cx) {
                    Poll::Ready(Some(Ok(AsyncMessage::Notification(_)))) => return Poll::Ready(Event::Notified),
                    // Notices and other messages: keep reading.
                    Poll::Ready(Some(Ok(_))) => {}
                    Poll::Ready(Some(Err(_)) | None) => return Poll::Ready(Event::Ended),
                    Poll::Pending => return Poll::Pending,
                }
            }
        })
        .await;
        match event {
            Event::Listened(true) => {
                listening = true;
                // Whatever was committed while nobody listened: readers look once.
                signal.notify();
            }
            Event::Listened(false) | Event::Ended => return listening,
            Event::Notified => signal.notify(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_fit_and_differ() {
        assert_eq!(channel("es"), "es_commits_es");
        let long_a = format!("{}a", "x".repeat(62));
        let long_b = format!("{}b", "x".repeat(62));
        assert_eq!(channel(&long_a).len(), 63);
        assert_ne!(channel(&long_a), channel(&long_b));
        assert!(application_name(&long_a).len() <= 63);
    }
}
