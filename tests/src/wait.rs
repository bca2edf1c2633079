//! Waiting for real peers to reach a state: a condition polled until it holds or time runs
//! out.

use std::time::{Duration, Instant};

/// Polls `check` every 100 ms until it holds; false once `timeout` has passed without it.
///
/// It blocks, as the rest of the harness does: an async test on a multi-thread runtime calls
/// it from its body (the workers keep serving meanwhile), anywhere else inside
/// `tokio::task::spawn_blocking`.
pub fn eventually(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !check() {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_or_times_out() {
        let mut calls = 0;
        assert!(eventually(Duration::from_secs(5), || {
            calls += 1;
            calls == 3
        }));
        assert_eq!(calls, 3);
        let started = Instant::now();
        assert!(!eventually(Duration::from_millis(250), || false));
        assert!(started.elapsed() >= Duration::from_millis(250));
    }
}
