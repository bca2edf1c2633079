//! Process lifecycle: readiness, graceful drain and forced stop.
//!
//! On SIGTERM/SIGINT the proxy reports not-ready at once and listeners stop accepting; sessions
//! already relaying may run on for the grace period, then they are told to stop; the force
//! timeout bounds the whole shutdown.

use std::time::Duration;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

#[derive(Clone)]
pub struct Lifecycle {
    draining: CancellationToken,
    terminate: CancellationToken,
    sessions: TaskTracker,
    grace: Duration,
    force: Duration,
}

impl Lifecycle {
    pub fn new(grace: Duration, force: Duration) -> Self {
        Self {
            draining: CancellationToken::new(),
            terminate: CancellationToken::new(),
            sessions: TaskTracker::new(),
            grace,
            force,
        }
    }

    /// Cancelled when the proxy starts draining: stop accepting, report not-ready.
    pub fn draining(&self) -> &CancellationToken {
        &self.draining
    }

    /// Cancelled when sessions must end now (grace period over).
    pub fn terminate(&self) -> &CancellationToken {
        &self.terminate
    }

    pub fn is_draining(&self) -> bool {
        self.draining.is_cancelled()
    }

    /// Tracks a client session so that shutdown waits for it.
    pub fn spawn_session<F>(&self, session: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: std::future::Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.sessions.spawn(session)
    }

    /// Number of client sessions alive now.
    pub fn active_sessions(&self) -> usize {
        self.sessions.len()
    }

    /// Resolves on the first SIGTERM or SIGINT.
    pub async fn wait_for_signal(&self) {
        let ctrl_c = async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!(signal = "SIGINT", "shutting down"),
            _ = term => tracing::info!(signal = "SIGTERM", "shutting down"),
        }
    }

    /// Drains: not-ready now, sessions may finish within the grace period, then they are
    /// terminated; returns at the latest after the force timeout.
    pub async fn drain(&self) {
        self.draining.cancel();
        self.sessions.close();
        let active = self.sessions.len();
        tracing::info!(active_sessions = active, grace = ?self.grace, "draining");
        let forced = tokio::time::sleep(self.force);
        tokio::pin!(forced);
        tokio::select! {
            _ = self.sessions.wait() => return,
            _ = tokio::time::sleep(self.grace) => {
                tracing::info!(active_sessions = self.sessions.len(), "grace period over, ending sessions");
                self.terminate.cancel();
            }
            _ = &mut forced => {
                tracing::warn!(active_sessions = self.sessions.len(), "force quit timeout reached");
                return;
            }
        }
        tokio::select! {
            _ = self.sessions.wait() => {}
            _ = &mut forced => {
                tracing::warn!(active_sessions = self.sessions.len(), "force quit timeout reached");
            }
        }
    }
}

/// Raises this process's soft limit on open files to its hard limit, as the Go runtime does for
/// the upstream proxy: the common soft default (1024) is far below the connection limits
/// (10,000 RTMP connections by default) and every connection takes two descriptors. Children
/// inherit it. Returns the limit now in force.
#[cfg(unix)]
pub fn raise_open_file_limit() -> std::io::Result<u64> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the plain struct passed by pointer.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit = raised;
        }
    }
    Ok(limit.rlim_cur)
}
