//! What genrepi prints: one line per window and a verdict per stream, as
//! text for people or JSON lines for programs.
//!
//! Probabilities in JSON keep full `f32` precision (shortest round-trip
//! form). Owns formatting only; writes go to any `io::Write`, flushed per line so a
//! pipe sees each result as it happens.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};

use crate::frontend::{Prediction, StreamResult, argmax};
use crate::http::Status;
use crate::scheduler::{Sink, Verdict};

/// Text or JSON lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `  12.0-15.1 s  rock     0.83`
    Text,
    /// One JSON object per line.
    Json,
}

/// Prints predictions for a list of labels.
pub struct Printer<W: Write> {
    out: W,
    format: Format,
    labels: Vec<String>,
}

impl<W: Write> Printer<W> {
    /// A printer writing to `out`.
    pub fn new(out: W, format: Format, labels: &[String]) -> Self {
        Printer {
            out,
            format,
            labels: labels.to_vec(),
        }
    }

    fn probs_map(&self, probs: &[f32]) -> Map<String, Value> {
        self.labels
            .iter()
            .zip(probs)
            .map(|(l, &p)| (l.clone(), json!(p)))
            .collect()
    }

    /// One classified window of `file`.
    pub fn window(&mut self, file: &str, p: &Prediction<'_>) -> std::io::Result<()> {
        let top = argmax(p.probs);
        match self.format {
            Format::Text => writeln!(
                self.out,
                "{}  {:7.2}-{:7.2} s  {:<10} {:.2}",
                escape_control(file),
                p.start_s,
                p.end_s,
                self.labels[top],
                p.probs[top]
            )?,
            Format::Json => {
                let line = json!({
                    "file": file,
                    "start_s": round4(p.start_s),
                    "end_s": round4(p.end_s),
                    "top": self.labels[top],
                    "probs": self.probs_map(p.probs),
                });
                writeln!(self.out, "{line}")?
            }
        }
        self.out.flush()
    }

    /// The verdict for a whole stream: the mean of its window probabilities.
    pub fn verdict(&mut self, file: &str, r: &StreamResult) -> std::io::Result<()> {
        let top = argmax(&r.mean_probs);
        match self.format {
            Format::Text => {
                let padded = match (r.stats.padded, r.stats.short_input) {
                    (true, Some(crate::features::ShortInput::Loop)) => {
                        " (looped: shorter than a window)"
                    }
                    (true, _) => " (padded: shorter than a window)",
                    _ => "",
                };
                writeln!(
                    self.out,
                    "{}: {} ({:.2}) over {} window(s){padded}",
                    escape_control(file),
                    self.labels[top],
                    r.mean_probs[top],
                    r.stats.windows
                )?
            }
            Format::Json => {
                let line = json!({
                    "file": file,
                    "genre": self.labels[top],
                    "probs": self.probs_map(&r.mean_probs),
                    "windows": r.stats.windows,
                });
                writeln!(self.out, "{line}")?
            }
        }
        self.out.flush()
    }
}

/// `s` with control characters (newlines, escape codes) written as Rust
/// escapes, for text output: a file name cannot forge a line or drive
/// the terminal.
pub fn escape_control(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(s);
    }
    std::borrow::Cow::Owned(
        s.chars()
            .map(|c| {
                if c.is_control() {
                    c.escape_default().to_string()
                } else {
                    c.to_string()
                }
            })
            .collect(),
    )
}

/// Seconds rounded to 0.1 ms, for readable JSON.
fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}

/// Formats one live [`Verdict`] as a line (without the newline).
///
/// Text: `2026-11-24T10:00:01.234Z  rock       0.62  rock 0.70  metal 0.15  blues 0.05  152 ms`;
/// quiet windows read `silence` with their level. JSON lines carry `ts`,
/// `seq`, `top` (three best of this window), `smoothed` (reported genre and
/// its smoothed probability), `probs` (label → p), `level_db`,
/// `latency_ms`, `inference_ms`, `dropped` and `overruns`.
pub fn live_line(format: Format, labels: &[String], v: &Verdict<'_>) -> String {
    let ts = humantime::format_rfc3339_millis(v.ts).to_string();
    let latency_ms = (v.latency.as_secs_f64() * 1e4).round() / 10.0;
    let top3 = |probs: &[f32]| -> Vec<usize> {
        let mut idx: Vec<usize> = (0..probs.len()).collect();
        idx.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        idx.truncate(3);
        idx
    };
    match format {
        Format::Text => {
            let mut line = match &v.result {
                None => format!(
                    "{ts}  {:<10} {:5}  level {:.1} dBFS",
                    "silence", "", v.level_db
                ),
                Some(c) => {
                    let mut s = format!("{ts}  {:<10} {:.2} ", labels[c.smoothed], c.smoothed_p);
                    for i in top3(c.probs) {
                        s.push_str(&format!(" {} {:.2}", labels[i], c.probs[i]));
                    }
                    s.push_str(&format!("  {latency_ms:.0} ms"));
                    s
                }
            };
            if v.dropped > 0 || v.overruns > 0 {
                line.push_str(&format!(
                    "  (dropped {}, overruns {})",
                    v.dropped, v.overruns
                ));
            }
            line
        }
        Format::Json => {
            let (top, smoothed, probs, inference_ms) = match &v.result {
                None => (
                    Value::Array(vec![]),
                    json!({"genre": "silence", "p": Value::Null}),
                    Value::Null,
                    Value::Null,
                ),
                Some(c) => (
                    top3(c.probs)
                        .into_iter()
                        .map(|i| json!({"genre": labels[i], "p": c.probs[i]}))
                        .collect(),
                    json!({"genre": labels[c.smoothed], "p": c.smoothed_p}),
                    Value::Object(
                        labels
                            .iter()
                            .zip(c.probs)
                            .map(|(l, &p)| (l.clone(), json!(p)))
                            .collect(),
                    ),
                    json!((c.inference.as_secs_f64() * 1e4).round() / 10.0),
                ),
            };
            json!({
                "ts": ts,
                "seq": v.seq,
                "end_s": round4(v.end_s),
                "top": top,
                "smoothed": smoothed,
                "probs": probs,
                "level_db": (v.level_db as f64 * 10.0).round() / 10.0,
                "latency_ms": latency_ms,
                "inference_ms": inference_ms,
                "dropped": v.dropped,
                "overruns": v.overruns,
            })
            .to_string()
        }
    }
}

/// Writes `bytes` to `path` without ever leaving a partial file there: into
/// a temporary file beside it, flushed to disk, then renamed over `path`
/// (atomic on one file system). On failure the temporary file is removed
/// and whatever `path` held before is untouched.
pub fn write_atomically(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomically_with(path, |file| file.write_all(bytes))
}

/// Like [`write_atomically`], with `write` filling the temporary file: a
/// crash, a kill or a full disk part-way leaves the previous `path` as it
/// was (and at most a `.NAME.tmp-PID` beside it, removed on errors).
pub fn write_atomically_with(
    path: &std::path::Path,
    write: impl FnOnce(&mut std::fs::File) -> std::io::Result<()>,
) -> std::io::Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("not a file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        write(&mut file)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What became of standard output, as the live sink found it.
#[derive(Debug, Default)]
pub struct OutputState {
    closed: AtomicBool,
    error: Mutex<Option<std::io::Error>>,
}

impl OutputState {
    /// Notes a failed write: a closed pipe (the reader left) ends output
    /// quietly; any other error is kept for [`OutputState::take_error`].
    pub fn record(&self, e: std::io::Error) {
        if let (true, Ok(mut slot)) = (
            e.kind() != std::io::ErrorKind::BrokenPipe,
            self.error.lock(),
        ) {
            slot.get_or_insert(e);
        }
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether a write has failed: the listener then stops.
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// The write error, unless the pipe was only closed by its reader.
    pub fn take_error(&self) -> Option<std::io::Error> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }
}

/// The live pipeline's sink: one line per verdict on stdout (flushed, so a
/// pipe sees it at once) and the status page's [`Status`] kept current.
/// `hop_frames` and `frame_s` give the hop in force.
pub fn live_sink(
    format: Format,
    labels: Vec<String>,
    output: Arc<OutputState>,
    status: Arc<Mutex<Status>>,
    hop_frames: Arc<AtomicUsize>,
    frame_s: f64,
) -> Sink {
    Box::new(move |v: &Verdict<'_>| {
        let line = live_line(format, &labels, v);
        let mut out = std::io::stdout().lock();
        if let Err(e) = writeln!(out, "{line}").and_then(|_| out.flush()) {
            output.record(e);
        }
        let hop_s = hop_frames.load(Ordering::Relaxed) as f64 * frame_s;
        status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(v, &labels, hop_s);
    })
}
