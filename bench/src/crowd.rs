//! A crowd of sessions (publishers or players) started together, counted together and
//! stopped together.

use std::{
    future::Future,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// What a crowd of sessions did, updated as it happens.
#[derive(Debug, Default)]
pub struct Counters {
    /// Sessions set up (publishing or playing).
    pub up: AtomicU64,
    /// Sessions that failed to set up or lost their connection.
    pub failed: AtomicU64,
    /// Media payload bytes sent (publishers) or received (players).
    pub media_bytes: AtomicU64,
    /// Media messages or tags.
    pub frames: AtomicU64,
}

impl Counters {
    pub fn media_bytes(&self) -> u64 {
        self.media_bytes.load(Ordering::Relaxed)
    }
    pub fn up(&self) -> u64 {
        self.up.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }
    pub(crate) fn count_up(&self) {
        self.up.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn count_media(&self, bytes: usize) {
        self.media_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
    }
    /// A session that could not start or lost its connection.
    pub(crate) fn count_failure(&self, session: &str, what: &str, err: &dyn std::fmt::Display) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(session, error = %err, "{what}");
    }
}

/// Sessions running as tasks; dropping the crowd tells them all to stop.
pub struct Crowd {
    pub counters: Arc<Counters>,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Crowd {
    /// Starts `n` sessions: `session(i, counters, stop)` for each.
    pub fn start<F, Fut>(n: usize, mut session: F) -> Self
    where
        F: FnMut(usize, Arc<Counters>, CancellationToken) -> Fut,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let counters = Arc::new(Counters::default());
        let stop = CancellationToken::new();
        let tasks = (0..n)
            .map(|i| tokio::spawn(session(i, counters.clone(), stop.clone())))
            .collect();
        Self {
            counters,
            stop,
            tasks,
        }
    }

    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Fails when any session failed so far.
    pub fn ensure_none_failed(&self, what: &str) -> anyhow::Result<()> {
        let failed = self.counters.failed();
        anyhow::ensure!(failed == 0, "{failed} of {} {what} failed", self.len());
        Ok(())
    }

    /// Stops every session and waits for them to end.
    pub async fn stop(mut self) {
        self.stop.cancel();
        for task in self.tasks.drain(..) {
            let _ = task.await;
        }
    }
}

impl Drop for Crowd {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn sessions_count_and_stop_together() {
        let crowd = Crowd::start(3, |i, counters, stop| async move {
            counters.count_up();
            counters.count_media(i + 1);
            stop.cancelled().await;
        });
        while crowd.counters.up() < 3 {
            tokio::task::yield_now().await;
        }
        assert_eq!(crowd.counters.media_bytes(), 6);
        assert_eq!(crowd.counters.frames(), 3);
        crowd.ensure_none_failed("sessions").unwrap();
        crowd.counters.count_failure("s1", "lost", &"reset");
        assert!(crowd.ensure_none_failed("sessions").is_err());
        crowd.stop().await;
    }
}
