//! Progress on the terminal: a spinner with the current step and live counters. Without a
//! terminal (CI, `make bench | tee`) steps are printed as lines and counters every few seconds.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
    last_line: Mutex<Option<Instant>>,
}

/// Counters are printed at most this often when there is no terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Progress {
    pub fn new() -> Self {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}")
                .expect("a valid template"),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        Self {
            bar,
            last_line: Mutex::new(None),
        }
    }

    /// A new step: printed as a line, and shown next to the spinner.
    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        if self.bar.is_hidden() {
            eprintln!("[bench] {message}");
        } else {
            self.bar.println(format!("[bench] {message}"));
        }
        self.bar.set_message(message);
        *self.last_line.lock().unwrap_or_else(|p| p.into_inner()) = Some(Instant::now());
    }

    /// Live state of the current step (counters).
    pub fn status(&self, message: impl Into<String>) {
        let message = message.into();
        if self.bar.is_hidden() {
            let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|at| at.elapsed() >= LINE_EVERY) {
                eprintln!("[bench]   {message}");
                *last = Some(Instant::now());
            }
        }
        self.bar.set_message(message);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
