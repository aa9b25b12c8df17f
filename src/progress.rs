//! Progress on long work (`eval`, `features`, `bench`): a bar on stderr
//! with the count, the rate and the time left, drawn only when stderr is a
//! terminal and `-q` is off. Piped or logged runs get nothing extra, and
//! nothing ever goes to stdout.

use std::io::IsTerminal;

/// A progress bar, or nothing (hidden), shared by worker threads.
#[derive(Clone, Default)]
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    /// A bar counting `unit`s (`clips`, `runs`) if `wanted` and stderr is a
    /// terminal; a hidden one otherwise.
    pub fn new(wanted: bool, unit: &'static str) -> Self {
        if !(wanted && std::io::stderr().is_terminal()) {
            return Progress { bar: None };
        }
        let style = indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {unit} ({per_sec}, {eta} left) {wide_msg}",
        )
        .map(|s| {
            s.with_key(
                "unit",
                move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = w.write_str(unit);
                },
            )
        })
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
        let bar = indicatif::ProgressBar::new(0).with_style(style);
        Progress { bar: Some(bar) }
    }

    /// A bar that never draws (tests, library callers).
    pub fn hidden() -> Self {
        Progress::default()
    }

    /// Sets the total once it is known.
    pub fn start(&self, total: usize) {
        if let Some(b) = &self.bar {
            b.set_length(total as u64);
            b.reset_eta();
        }
    }

    /// One more done; `what` names it.
    pub fn advance(&self, what: &str) {
        if let Some(b) = &self.bar {
            b.set_message(crate::output::escape_control(what).into_owned());
            b.inc(1);
        }
    }

    /// Removes the bar from the terminal.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
