//! Sleeping without a particular async runtime.
//!
//! The repository's backoff (and every timer of the runners built on es) sleeps through
//! [`sleep`], which needs no Tokio runtime, no `enable_time` and no executor of any kind: a
//! timer thread, started on first use, wakes the sleeping task. It works under Tokio (either
//! flavour, with or without timers), async-std, smol, `futures::executor::block_on` or a
//! hand-written executor.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// A future that completes after its duration. Made by [`sleep`].
#[must_use = "a sleep does nothing unless awaited"]
pub struct Sleep(Option<futures_timer::Delay>);

impl std::fmt::Debug for Sleep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sleep").finish_non_exhaustive()
    }
}

/// Completes after `duration`, on any executor. A zero duration completes at once.
pub fn sleep(duration: Duration) -> Sleep {
    Sleep((!duration.is_zero()).then(|| futures_timer::Delay::new(duration)))
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match &mut self.0 {
            None => Poll::Ready(()),
            Some(delay) => Pin::new(delay).poll(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::task::Wake;
    use std::time::Instant;

    use super::*;

    /// The smallest executor there is: poll, park until woken, poll again. No runtime.
    fn block_on<F: Future>(future: F) -> F::Output {
        struct Unpark(std::thread::Thread);
        impl Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = Arc::new(Unpark(std::thread::current())).into();
        let mut cx = Context::from_waker(&waker);
        let mut future = std::pin::pin!(future);
        loop {
            if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
                return output;
            }
            std::thread::park();
        }
    }

    #[test]
    fn sleeps_without_any_runtime() {
        let started = Instant::now();
        block_on(sleep(Duration::from_millis(20)));
        assert!(started.elapsed() >= Duration::from_millis(20));
        block_on(sleep(Duration::ZERO));
    }
}
