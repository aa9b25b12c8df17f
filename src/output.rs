//! What genrepi prints: one line per window and a verdict per stream, as
//! text for people or JSON lines for programs.
//!
//! Probabilities in JSON keep full `f32` precision (shortest round-trip
//! form). Owns formatting only; writes go to any `io::Write`, flushed per line so a
//! pipe sees each result as it happens.

use std::io::Write;

use serde_json::{Map, Value, json};

use crate::scheduler::{Prediction, StreamResult, argmax};

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
                "{file}  {:7.2}-{:7.2} s  {:<10} {:.2}",
                p.start_s, p.end_s, self.labels[top], p.probs[top]
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
                let padded = if r.stats.padded {
                    " (padded: shorter than a window)"
                } else {
                    ""
                };
                writeln!(
                    self.out,
                    "{file}: {} ({:.2}) over {} window(s){padded}",
                    self.labels[top], r.mean_probs[top], r.stats.windows
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

/// Seconds rounded to 0.1 ms, for readable JSON.
fn round4(x: f64) -> f64 {
    (x * 1e4).round() / 1e4
}
