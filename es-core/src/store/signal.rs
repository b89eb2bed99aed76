//! An in-process wake-up for readers that follow a store: fired after each commit, waited on
//! without polling and without any particular executor.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};

/// A counter of commits with the tasks waiting for the next one. Clones share it.
///
/// A store that can tell readers in the same process that it committed returns one from
/// [`EventStore::commit_signal`](super::EventStore::commit_signal) and calls
/// [`CommitSignal::notify`] after each commit. A reader takes [`CommitSignal::generation`]
/// *before* it reads, and after a read that found nothing new awaits
/// [`CommitSignal::changed`] with it: a commit between the two is never missed.
#[derive(Clone, Default)]
pub struct CommitSignal {
    inner: Arc<Mutex<State>>,
}

#[derive(Default)]
struct State {
    generation: u64,
    waiting: Vec<Waker>,
}

impl std::fmt::Debug for CommitSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CommitSignal").field("generation", &self.generation()).finish_non_exhaustive()
    }
}

impl CommitSignal {
    /// A signal nobody has fired yet.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a counter and a list of wakers: a panic cannot leave it half-written.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many times it was fired (wrapping).
    #[must_use]
    pub fn generation(&self) -> u64 {
        self.lock().generation
    }

    /// Fires: wakes every task waiting in [`CommitSignal::changed`].
    pub fn notify(&self) {
        let waiting = {
            let mut state = self.lock();
            state.generation = state.generation.wrapping_add(1);
            std::mem::take(&mut state.waiting)
        };
        for waker in waiting {
            waker.wake();
        }
    }

    /// Completes once the generation differs from `seen` (at once if it already does).
    pub fn changed(&self, seen: u64) -> Changed {
        Changed { signal: self.clone(), seen }
    }
}

/// The future of [`CommitSignal::changed`].
#[must_use = "a wait does nothing unless awaited"]
#[derive(Debug)]
pub struct Changed {
    signal: CommitSignal,
    seen: u64,
}

impl Future for Changed {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.signal.lock();
        if state.generation != self.seen {
            return Poll::Ready(());
        }
        if !state.waiting.iter().any(|waker| waker.will_wake(cx.waker())) {
            state.waiting.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// Runs `a` and `b` together and returns the output of whichever finishes first.
pub(crate) async fn first_of<T>(a: impl Future<Output = T>, b: impl Future<Output = T>) -> T {
    let mut a = std::pin::pin!(a);
    let mut b = std::pin::pin!(b);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = a.as_mut().poll(cx) {
            return Poll::Ready(out);
        }
        b.as_mut().poll(cx)
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_commit_after_the_generation_was_read_is_not_missed() {
        let signal = CommitSignal::new();
        let seen = signal.generation();
        signal.notify();
        // Already changed: completes at once.
        signal.changed(seen).await;
        let seen = signal.generation();
        let waiter = tokio::spawn({
            let signal = signal.clone();
            async move { signal.changed(seen).await }
        });
        tokio::task::yield_now().await;
        signal.notify();
        tokio::time::timeout(Duration::from_secs(5), waiter).await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn first_of_returns_the_first_to_finish() {
        let signal = CommitSignal::new();
        let out = first_of(
            async {
                signal.changed(signal.generation()).await;
                1
            },
            async {
                crate::timer::sleep(Duration::from_millis(5)).await;
                2
            },
        )
        .await;
        assert_eq!(out, 2);
    }
}
