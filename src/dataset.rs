//! GTZAN-layout folders and the parallel worker pool that walks them.
//!
//! A dataset folder holds one sub-folder per genre, named as the model's
//! labels, with audio clips inside (`DIR/<genre>/<clip>`). Sub-folders that
//! are not labels are skipped with a warning, as are files that are not
//! audio by extension. Also owns `genrepi features`: the windows of a
//! dataset exactly as the model receives them, written for numpy.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use ndarray::{Array1, ArrayView4};
use ndarray_npy::NpzWriter;
use serde::Serialize;

use crate::audio::FileSource;
use crate::error::{Error, Result};
use crate::frontend::{Frontend, StreamStats};
use crate::model::Model;

/// File extensions treated as audio when scanning a dataset.
pub const AUDIO_EXTENSIONS: &[&str] = &[
    "wav", "wave", "flac", "mp3", "ogg", "oga", "aif", "aiff", "mka", "mkv", "webm",
];

/// One labelled clip.
#[derive(Debug, Clone, Serialize)]
pub struct Clip {
    /// The audio file.
    pub path: PathBuf,
    /// Index of its genre in the model's labels.
    pub label: usize,
}

/// Lists the clips of a GTZAN-layout folder, sorted by genre then file name.
pub fn scan(dir: &Path, labels: &[String]) -> Result<Vec<Clip>> {
    let read_dir = |d: &Path| {
        std::fs::read_dir(d).map_err(|cause| Error::Read {
            path: d.to_path_buf(),
            cause,
        })
    };
    let mut clips = Vec::new();
    let mut genres: Vec<PathBuf> = read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    genres.sort();
    for genre_dir in genres {
        let name = genre_dir.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let Some(label) = labels.iter().position(|l| l == name) else {
            log::warn!(
                "{}: not one of the model's labels, skipped",
                genre_dir.display()
            );
            continue;
        };
        let mut files: Vec<PathBuf> = read_dir(&genre_dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .filter(|p| {
                let audio = p
                    .extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()));
                if !audio {
                    log::debug!("{}: not an audio file extension, skipped", p.display());
                }
                audio
            })
            .collect();
        files.sort();
        clips.extend(files.into_iter().map(|path| Clip { path, label }));
    }
    if clips.is_empty() {
        return Err(Error::Dataset {
            path: dir.to_path_buf(),
            detail: format!(
                "no audio clips in genre folders named {} (expected DIR/<genre>/<clip>)",
                labels.join(", ")
            ),
        });
    }
    Ok(clips)
}

/// Runs `work` over `items` on `jobs` threads, each with its own state from
/// `init`; results come back in `items`' order. A panic while working on
/// one item is that item's [`Error::Panic`] (named by `name`); the worker
/// rebuilds its state and goes on with the rest.
pub fn parallel_map<I: Sync, S, T: Send>(
    items: &[I],
    jobs: usize,
    progress: &crate::progress::Progress,
    name: impl Fn(&I) -> String + Sync,
    init: impl Fn() -> Result<S> + Sync,
    work: impl Fn(&mut S, usize, &I) -> Result<T> + Sync,
) -> Result<Vec<Result<T>>> {
    let next = AtomicUsize::new(0);
    progress.start(items.len());
    let results: Mutex<Vec<Option<Result<T>>>> =
        Mutex::new((0..items.len()).map(|_| None).collect());
    std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, items.len().max(1)))
            .map(|_| {
                scope.spawn(|| -> Result<()> {
                    let mut state = init()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(item) = items.get(i) else {
                            return Ok(());
                        };
                        let what = name(item);
                        let out = crate::error::contain(&what, || work(&mut state, i, item));
                        progress.advance(&what);
                        if matches!(out, Err(Error::Panic { .. })) {
                            // The worker's state may be half-updated: start afresh.
                            state = init()?;
                        }
                        if let Ok(mut r) = results.lock() {
                            r[i] = Some(out);
                        }
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(Error::Panic {
                        what: "a worker".into(),
                        detail: "panicked outside any one file".into(),
                    })
                })
            })
            .collect::<Result<Vec<()>>>()
    })?;
    progress.finish();
    let results = results.into_inner().unwrap_or_default();
    Ok(results.into_iter().flatten().collect())
}

/// Sidecar metadata written next to a features file (`FILE.json`).
#[derive(Debug, Serialize)]
pub struct FeaturesMeta {
    /// Class labels; `y` indexes these.
    pub labels: Vec<String>,
    /// Clip paths; `clip` indexes these.
    pub clips: Vec<String>,
    /// Shape of one window in `x` (without the leading window axis).
    pub input_shape: Vec<usize>,
    /// Window hop, in STFT frames.
    pub hop_frames: usize,
    /// The manifest the windows were prepared for.
    pub manifest: String,
    /// Each clip's duration in seconds, in `clips` order.
    pub clip_seconds: Vec<f64>,
    /// How each clip shorter than one window was made into one (`pad` or
    /// `loop`, the manifest's `short_input`); `null` for the others.
    pub clip_short: Vec<Option<crate::features::ShortInput>>,
    /// Files that failed, with the reason.
    pub failed: Vec<(String, String)>,
}

/// What `features` produced.
#[derive(Debug)]
pub struct FeaturesOutcome {
    /// Windows written.
    pub windows: usize,
    /// Clips that produced windows.
    pub clips: usize,
    /// Clips that failed, with their errors.
    pub failed: Vec<(PathBuf, Error)>,
}

/// Writes every window of the clips under `dir` as the model receives it.
///
/// `out` (`.npz`) gets `x` (f32, `[N, C, H, W]`), `y` (i64 label index),
/// `clip` (i64 index into the sidecar's clip list) and `start_s` (f32);
/// `out` with `.json` gets [`FeaturesMeta`].
///
/// About 85 lines: the parallel pass and the merge of its results in clip
/// order share the sidecar being built; the file writing is `write_npz`.
pub fn export_features(
    model: &std::sync::Arc<Model>,
    dir: &Path,
    out: &Path,
    hop_frames: usize,
    jobs: usize,
    progress: &crate::progress::Progress,
) -> Result<FeaturesOutcome> {
    if out.extension().is_none_or(|e| e != "npz") {
        return Err(Error::Write {
            path: out.to_path_buf(),
            detail: "the output must end in .npz (its .json sidecar goes beside it)".into(),
        });
    }
    let clips = scan(dir, model.labels())?;
    let input_len = model.input_len();
    let cfg = model.manifest().features.clone();
    let per_clip = parallel_map(
        &clips,
        jobs,
        progress,
        |clip| clip.path.display().to_string(),
        || Ok((Frontend::new(&cfg, hop_frames)?, Vec::new())),
        |(frontend, scratch), _, clip| -> Result<(Vec<f32>, Vec<f32>, StreamStats)> {
            let mut source = FileSource::open(&clip.path)?;
            let (mut x, mut starts) = (Vec::new(), Vec::new());
            let stats = frontend.run(&mut source, &mut |w| {
                let at = x.len();
                x.resize(at + input_len, 0.0);
                model.prepare_input(w.values, &mut x[at..], scratch);
                starts.push((w.first_frame as f64 * cfg.frame_seconds()) as f32);
                Ok(())
            })?;
            Ok((x, starts, stats))
        },
    )?;
    let (mut x, mut y, mut clip_ix, mut start_s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut meta = FeaturesMeta {
        labels: model.labels().to_vec(),
        clips: Vec::new(),
        input_shape: model.manifest().input.shape[1..].to_vec(),
        hop_frames,
        manifest: model.manifest_path().display().to_string(),
        clip_seconds: Vec::new(),
        clip_short: Vec::new(),
        failed: Vec::new(),
    };
    let mut failed = Vec::new();
    for (clip, result) in clips.iter().zip(per_clip) {
        match result {
            Ok((cx, starts, stats)) => {
                let id = meta.clips.len() as i64;
                meta.clips.push(clip.path.display().to_string());
                meta.clip_seconds.push(stats.audio_seconds);
                meta.clip_short.push(stats.short_input);
                x.extend_from_slice(&cx);
                y.extend(std::iter::repeat_n(clip.label as i64, starts.len()));
                clip_ix.extend(std::iter::repeat_n(id, starts.len()));
                start_s.extend(starts);
            }
            Err(e) => {
                log::error!("{e}");
                meta.failed
                    .push((clip.path.display().to_string(), e.to_string()));
                failed.push((clip.path.clone(), e));
            }
        }
    }
    let n = y.len();
    let [_, c, h, w] = model.manifest().input.shape;
    write_npz(out, (n, c, h, w), &x, y, clip_ix, start_s)?;
    let write_err = |detail: String| Error::Write {
        path: out.to_path_buf(),
        detail,
    };
    let meta_path = out.with_extension("json");
    let json = serde_json::to_string_pretty(&meta).map_err(|e| write_err(e.to_string()))?;
    crate::output::write_atomically(&meta_path, json.as_bytes()).map_err(|e| Error::Write {
        path: meta_path.clone(),
        detail: e.to_string(),
    })?;
    Ok(FeaturesOutcome {
        windows: n,
        clips: meta.clips.len(),
        failed,
    })
}

/// The feature arrays (`x` of `shape`, then `y`, `clip` and `start_s`, one
/// per window) into `out` through a temporary file renamed when complete: a
/// kill or a full disk never leaves a half-written output where a good one
/// was.
fn write_npz(
    out: &Path,
    shape: (usize, usize, usize, usize),
    x: &[f32],
    y: Vec<i64>,
    clip: Vec<i64>,
    start_s: Vec<f32>,
) -> Result<()> {
    let write_err = |detail: String| Error::Write {
        path: out.to_path_buf(),
        detail,
    };
    let xs = ArrayView4::from_shape(shape, x).map_err(|e| write_err(e.to_string()))?;
    let npz_err =
        |name: &str, e: ndarray_npy::WriteNpzError| std::io::Error::other(format!("{name}: {e}"));
    crate::output::write_atomically_with(out, |file| {
        let mut npz = NpzWriter::new(std::io::BufWriter::new(file));
        npz.add_array("x", &xs).map_err(|e| npz_err("x", e))?;
        npz.add_array("y", &Array1::from(y))
            .map_err(|e| npz_err("y", e))?;
        npz.add_array("clip", &Array1::from(clip))
            .map_err(|e| npz_err("clip", e))?;
        npz.add_array("start_s", &Array1::from(start_s))
            .map_err(|e| npz_err("start_s", e))?;
        let mut buffered = npz.finish().map_err(|e| npz_err("finish", e))?;
        std::io::Write::flush(&mut buffered)
    })
    .map_err(|e| write_err(e.to_string()))
}
