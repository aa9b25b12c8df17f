//! `genrepi eval`: accuracy of a model on a GTZAN-layout folder.
//!
//! Each clip goes through the same [`crate::frontend`] path as replay, with
//! non-overlapping windows by default; a clip's verdict is the mean of its
//! windows' probabilities. Clips are spread over worker threads, each with
//! its own classifier. Owns the metrics (window and clip accuracy, per-genre
//! recall, confusion matrix, latency percentiles) and the JSON report.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use serde::Serialize;

use crate::audio::FileSource;
use crate::dataset::{Clip, parallel_map, scan};
use crate::error::{Error, Result};
use crate::frontend::{Frontend, StageTimes, argmax, classify_stream};
use crate::model::Model;

/// One clip's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ClipReport {
    /// The audio file.
    pub file: String,
    /// True genre.
    pub label: String,
    /// Predicted genre (argmax of the mean probabilities).
    pub predicted: String,
    /// Mean window probabilities, by label.
    pub probs: BTreeMap<String, f32>,
    /// Windows classified.
    pub windows: usize,
    /// Windows whose own argmax was the true genre.
    pub windows_correct: usize,
    /// Each window's probabilities, in `labels` order (for comparing
    /// runtimes window by window).
    pub window_probs: Vec<Vec<f32>>,
}

/// Recall of one genre.
#[derive(Debug, Clone, Serialize)]
pub struct ClassReport {
    /// Clips of this genre.
    pub clips: usize,
    /// Of those, correctly classified.
    pub correct: usize,
    /// `correct / clips`.
    pub recall: f64,
}

/// Median and 95th percentile, in milliseconds.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Latency {
    /// Median.
    pub median: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// The full evaluation report (`--report FILE.json`).
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The model's manifest.
    pub model: String,
    /// The dataset folder.
    pub data: String,
    /// Fraction of clips whose verdict is their genre.
    pub clip_accuracy: f64,
    /// Fraction of windows whose argmax is their clip's genre.
    pub window_accuracy: f64,
    /// Recall per genre.
    pub per_class: BTreeMap<String, ClassReport>,
    /// Clip counts, `confusion[true][predicted]`, in `labels` order.
    pub confusion: Vec<Vec<usize>>,
    /// Label order of `confusion`.
    pub labels: Vec<String>,
    /// Every evaluated clip.
    pub clips: Vec<ClipReport>,
    /// Inference time per window (input preparation and model run).
    pub latency_ms: Latency,
    /// Total time per stage, in seconds, summed over workers.
    pub stage_seconds: BTreeMap<String, f64>,
    /// Clips that could not be evaluated, with the reason.
    pub failed: Vec<FailedClip>,
}

/// A clip that failed.
#[derive(Debug, Clone, Serialize)]
pub struct FailedClip {
    /// The audio file.
    pub file: String,
    /// Why.
    pub error: String,
}

struct ClipOutcome {
    mean_probs: Vec<f32>,
    window_probs: Vec<Vec<f32>>,
    latencies_ms: Vec<f64>,
    times: StageTimes,
}

/// Evaluates `model` on every clip under `dir` with `jobs` workers and a
/// window hop of `hop_frames` STFT frames.
/// `progress` counts the clips as they are done.
pub fn evaluate(
    model: &Arc<Model>,
    dir: &Path,
    hop_frames: usize,
    jobs: usize,
    progress: &crate::progress::Progress,
) -> Result<Report> {
    let clips = scan(dir, model.labels())?;
    log::info!(
        "evaluating {} clips from {} on {jobs} worker(s)",
        clips.len(),
        dir.display()
    );
    let cfg = model.manifest().features.clone();
    let outcomes = parallel_map(
        &clips,
        jobs,
        progress,
        |clip| clip.path.display().to_string(),
        || Ok((Frontend::new(&cfg, hop_frames)?, model.classifier()?)),
        |(frontend, classifier), _, clip: &Clip| -> Result<ClipOutcome> {
            let mut source = FileSource::open(&clip.path)?;
            let (mut window_probs, mut latencies_ms) = (Vec::new(), Vec::new());
            let result = classify_stream(frontend, classifier, &mut source, |p| {
                window_probs.push(p.probs.to_vec());
                latencies_ms.push(p.latency.as_secs_f64() * 1e3);
            })?;
            Ok(ClipOutcome {
                mean_probs: result.mean_probs,
                window_probs,
                latencies_ms,
                times: result.stats.times,
            })
        },
    )?;
    Ok(summarise(model, dir, &clips, outcomes))
}

fn summarise(
    model: &Model,
    dir: &Path,
    clips: &[Clip],
    outcomes: Vec<Result<ClipOutcome>>,
) -> Report {
    let labels = model.labels().to_vec();
    let k = labels.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let (mut windows, mut windows_correct) = (0usize, 0usize);
    let mut latencies = Vec::new();
    let mut times = StageTimes::default();
    let mut reports = Vec::new();
    let mut failed = Vec::new();
    for (clip, outcome) in clips.iter().zip(outcomes) {
        let outcome = match outcome {
            Ok(o) => o,
            Err(e) => {
                log::error!("{e}");
                failed.push(FailedClip {
                    file: clip.path.display().to_string(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        let predicted = argmax(&outcome.mean_probs);
        confusion[clip.label][predicted] += 1;
        let correct = outcome
            .window_probs
            .iter()
            .filter(|p| argmax(p) == clip.label)
            .count();
        windows += outcome.window_probs.len();
        windows_correct += correct;
        latencies.extend(outcome.latencies_ms);
        times.add(&outcome.times);
        reports.push(ClipReport {
            file: clip.path.display().to_string(),
            label: labels[clip.label].clone(),
            predicted: labels[predicted].clone(),
            probs: labels
                .iter()
                .cloned()
                .zip(outcome.mean_probs.iter().copied())
                .collect(),
            windows: outcome.window_probs.len(),
            windows_correct: correct,
            window_probs: outcome.window_probs,
        });
    }
    let clips_ok: usize = (0..k).map(|i| confusion[i][i]).sum();
    let per_class = per_class(&labels, &confusion);
    let stage_seconds = [
        ("decode", times.decode),
        ("resample", times.resample),
        ("features", times.features),
        ("inference", times.inference),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.as_secs_f64()))
    .collect();
    Report {
        model: model.manifest_path().display().to_string(),
        data: dir.display().to_string(),
        clip_accuracy: ratio(clips_ok, reports.len()),
        window_accuracy: ratio(windows_correct, windows),
        per_class,
        confusion,
        labels,
        clips: reports,
        latency_ms: percentiles(&mut latencies),
        stage_seconds,
        failed,
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Recall of each genre from the clip confusion matrix.
fn per_class(labels: &[String], confusion: &[Vec<usize>]) -> BTreeMap<String, ClassReport> {
    labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let n: usize = confusion[i].iter().sum();
            let report = ClassReport {
                clips: n,
                correct: confusion[i][i],
                recall: ratio(confusion[i][i], n),
            };
            (l.clone(), report)
        })
        .collect()
}

/// Median and p95 (nearest rank) of `xs`; zeros when empty.
pub fn percentiles(xs: &mut [f64]) -> Latency {
    if xs.is_empty() {
        return Latency {
            median: 0.0,
            p95: 0.0,
        };
    }
    xs.sort_by(f64::total_cmp);
    let rank = |q: f64| xs[((q * xs.len() as f64).ceil() as usize).clamp(1, xs.len()) - 1];
    Latency {
        median: rank(0.5),
        p95: rank(0.95),
    }
}

impl Report {
    /// Human-readable summary: accuracies, recall, confusion, latency.
    pub fn to_text(&self) -> String {
        use std::fmt::Write;
        let mut s = String::new();
        let evaluated = self.clips.len();
        let windows: usize = self.clips.iter().map(|c| c.windows).sum();
        let _ = writeln!(s, "model:   {}", self.model);
        let _ = writeln!(
            s,
            "data:    {} ({evaluated} clips, {windows} windows)",
            crate::output::escape_control(&self.data)
        );
        let _ = writeln!(s, "clip accuracy:   {:.1}%", 100.0 * self.clip_accuracy);
        let _ = writeln!(s, "window accuracy: {:.1}%", 100.0 * self.window_accuracy);
        let _ = writeln!(s, "\nper-genre recall (clips):");
        for (label, c) in &self.per_class {
            let _ = writeln!(
                s,
                "  {label:<10} {:>3}/{:<3} {:5.1}%",
                c.correct,
                c.clips,
                100.0 * c.recall
            );
        }
        let width = self
            .labels
            .iter()
            .map(|l| l.len())
            .max()
            .unwrap_or(4)
            .max(4);
        let _ = write!(
            s,
            "\nconfusion (rows: true, columns: predicted)\n{:width$} ",
            ""
        );
        for l in &self.labels {
            let _ = write!(s, "{:>5}", &l[..l.len().min(4)]);
        }
        s.push('\n');
        for (l, row) in self.labels.iter().zip(&self.confusion) {
            let _ = write!(s, "{l:width$} ");
            for n in row {
                let _ = write!(s, "{n:>5}");
            }
            s.push('\n');
        }
        let _ = writeln!(
            s,
            "\nlatency per window: median {:.2} ms, p95 {:.2} ms",
            self.latency_ms.median, self.latency_ms.p95
        );
        if !self.failed.is_empty() {
            let _ = writeln!(s, "\n{} clip(s) failed:", self.failed.len());
            for f in &self.failed {
                let _ = writeln!(s, "  {}", crate::output::escape_control(&f.error));
            }
        }
        s
    }

    /// Writes the report as pretty JSON (a temporary file renamed into
    /// place: never a truncated report).
    pub fn write_json(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Write {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
        crate::output::write_atomically(path, json.as_bytes()).map_err(|e| Error::Write {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut xs: Vec<f64> = (1..=100).map(f64::from).collect();
        let l = percentiles(&mut xs);
        assert_eq!((l.median, l.p95), (50.0, 95.0));
        let l = percentiles(&mut [3.0]);
        assert_eq!((l.median, l.p95), (3.0, 3.0));
    }
}
