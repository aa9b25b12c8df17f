//! `genrepi bench`: what each model variant costs on this machine, and the
//! cache of those measurements that `--variant auto` follows.
//!
//! Each (variant, thread count) is measured in a child process of its own
//! (`genrepi --variant V --threads T bench --child`), so its load time and
//! peak resident memory are its own: load time, median and 95th-percentile
//! milliseconds per window (after one warm-up window), peak RSS, and the
//! matrix-product kernels tract picked (int8, f16 or f32). The parent
//! prints the table and, for a manifest with variants, writes the
//! measurements to the cache (a temporary file renamed into place), keyed
//! by the CPU and the variants' checksums, so a new CPU or a new model is
//! never ranked by old figures.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::model::{Manifest, Measured, Model};
use crate::platform::Platform;

/// Windows timed per measurement when not told: enough for a stable median
/// and a p95 on a 2-core machine in about 3 s per ResNet-152 variant.
pub const DEFAULT_WINDOWS: usize = 20;
/// The most windows one measurement may time (`--windows`).
pub const MAX_WINDOWS: usize = 10_000;

/// One variant measured at one thread count.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Row {
    /// Variant name (`model` for a manifest without variants).
    pub variant: String,
    /// Its arithmetic (`int8`, `fp16`, `fp32`, or `-` when not stated).
    pub arithmetic: String,
    /// Matrix-product threads.
    pub threads: usize,
    /// Time to read, check and optimise the model, ms.
    pub load_ms: f64,
    /// Median time per window, ms.
    pub median_ms: f64,
    /// 95th percentile time per window, ms.
    pub p95_ms: f64,
    /// Windows timed.
    pub windows: usize,
    /// Peak resident memory of the measuring process, bytes.
    pub peak_rss: u64,
    /// tract-linalg kernels of the plan's matrix products.
    pub kernels: Vec<String>,
    /// `TRACT_AVX512_FMA_UNITS` the measuring process ran with, when it
    /// decides the int8 kernel's tile (see [`FMA_UNITS`]); `None` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fma_units: Option<u8>,
}

/// tract's knob for its x86_64 int8 kernel choice: with `2` (two 512-bit FMA
/// ports, its probe's verdict on Xeons) it runs int8 matrix products on the
/// 16x16 AVX-512 VNNI kernel, with `1` on the 8x8 one. The probe says 1 on
/// Zen 4 (512-bit operations double-pumped), where the 16x16 kernel still
/// measured faster (its 16 accumulators hide the multiply-add latency that
/// the 8x8's 8 do not). So `bench` measures an int8 variant both ways on
/// CPUs with AVX-512 VNNI, and a model loaded afterwards follows the faster
/// ([`tile_choice`]); setting the variable by hand always wins.
pub const FMA_UNITS: &str = "TRACT_AVX512_FMA_UNITS";

/// [`FMA_UNITS`] as this process's environment sets it (tract reads the
/// same variable), when it is a number.
fn fma_units_set() -> Option<u8> {
    std::env::var(FMA_UNITS).ok()?.trim().parse().ok()
}

/// The values of [`FMA_UNITS`] worth measuring for a variant of
/// `arithmetic` on `platform`: both for int8 on AVX-512 VNNI (unless the
/// variable is set, then only its value), none otherwise.
pub fn fma_units_to_measure(arithmetic: &str, platform: &Platform) -> Vec<Option<u8>> {
    match (
        arithmetic,
        platform.arch,
        platform.has("avx512vnni"),
        fma_units_set(),
    ) {
        ("int8", "x86_64", true, None) => vec![Some(1), Some(2)],
        ("int8", "x86_64", true, Some(u)) => vec![Some(u)],
        _ => vec![None],
    }
}

/// Every row of one `genrepi bench` run, with what they were measured on.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurements {
    /// [`Platform::signature`] of the machine.
    pub cpu: String,
    /// The key the cache file is named by (CPU and variant checksums).
    pub key: String,
    /// The rows.
    pub rows: Vec<Row>,
}

impl Measurements {
    /// The fastest row of `variant` at `threads` (of several, when it was
    /// measured with each int8 kernel tile).
    fn fastest(&self, variant: &str, threads: usize) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.variant == variant && r.threads == threads)
            .min_by(|a, b| a.median_ms.total_cmp(&b.median_ms))
    }
}

impl Measured for Measurements {
    fn median_ms(&self, variant: &str, threads: usize) -> Option<f64> {
        self.fastest(variant, threads).map(|r| r.median_ms)
    }
}

/// How a model about to load should set [`FMA_UNITS`]: the value `bench`
/// measured fastest for `variant` at `threads` on this CPU, with the reason
/// to log. `None` when the variable is set by hand, when `bench` did not
/// measure both values, or when nothing was measured.
pub fn tile_choice(
    measured: Option<&Measurements>,
    variant: &str,
    threads: usize,
) -> Option<(u8, String)> {
    if std::env::var_os(FMA_UNITS).is_some() {
        return None;
    }
    let m = measured?;
    let rows: Vec<&Row> = m
        .rows
        .iter()
        .filter(|r| r.variant == variant && r.threads == threads && r.fma_units.is_some())
        .collect();
    if rows.len() < 2 {
        return None;
    }
    let best = m.fastest(variant, threads)?;
    let units = best.fma_units?;
    let others: Vec<String> = rows
        .iter()
        .filter(|r| r.fma_units != Some(units))
        .filter_map(|r| Some(format!("{:.1} ms with {}", r.median_ms, r.fma_units?)))
        .collect();
    Some((
        units,
        format!(
            "{FMA_UNITS}={units}: `genrepi bench` measured {:.1} ms per window with it at {threads} thread(s), {}",
            best.median_ms,
            others.join(", ")
        ),
    ))
}

/// The folder the measurements are cached in: `$GENREPI_CACHE_DIR`, else
/// systemd's `$CACHE_DIRECTORY`, else `$XDG_CACHE_HOME/genrepi`, else
/// `~/.cache/genrepi`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var("GENREPI_CACHE_DIR")
        .or_else(|| var("CACHE_DIRECTORY"))
        .or_else(|| var("XDG_CACHE_HOME").map(|d| d.join("genrepi")))
        .or_else(|| var("HOME").map(|d| d.join(".cache/genrepi")))
}

/// The cache key of `manifest`'s variants on `platform`.
fn key(manifest: &Manifest, platform: &Platform) -> String {
    let mut h = Sha256::new();
    h.update(platform.signature().as_bytes());
    for v in &manifest.variants {
        h.update(format!("\n{} {} {}", v.name, v.arithmetic.as_str(), v.sha256).as_bytes());
    }
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Measurements {
    /// The cached measurements of `manifest`'s variants on this CPU, if
    /// `genrepi bench` has run here (anything unreadable counts as none).
    pub fn cached(manifest: &Manifest, platform: &Platform) -> Option<Measurements> {
        let key = key(manifest, platform);
        let path = cache_dir()?.join(format!("bench-{key}.json"));
        // A small regular file, or it is not ours (a FIFO is never read).
        let text = crate::limits::read_text(&path).ok()?;
        let m: Measurements = serde_json::from_str(&text).ok()?;
        (m.key == key && m.cpu == platform.signature()).then_some(m)
    }

    /// Writes these measurements where [`Measurements::cached`] finds them.
    pub fn save(manifest: &Manifest, platform: &Platform, rows: Vec<Row>) -> Result<PathBuf> {
        let dir = cache_dir().ok_or_else(|| {
            Error::Config("no cache folder (set GENREPI_CACHE_DIR or HOME)".into())
        })?;
        let key = key(manifest, platform);
        let path = dir.join(format!("bench-{key}.json"));
        let fail = |detail: String| Error::Write {
            path: path.clone(),
            detail,
        };
        std::fs::create_dir_all(&dir).map_err(|e| fail(e.to_string()))?;
        let m = Measurements {
            cpu: platform.signature(),
            key,
            rows,
        };
        let text = serde_json::to_vec_pretty(&m).map_err(|e| fail(e.to_string()))?;
        crate::output::write_atomically(&path, &text).map_err(|e| fail(e.to_string()))?;
        Ok(path)
    }
}

/// Times `windows` inferences (after one warm-up) on a fixed synthetic
/// window: median and 95th percentile, ms. Inference time does not depend
/// on what the window holds.
pub fn time_windows(model: &Arc<Model>, windows: usize) -> Result<(f64, f64)> {
    let f = &model.manifest().features;
    let window: Vec<f32> = (0..f.n_mels * f.frames)
        .map(|i| -80.0 + ((i * 7919) % 8000) as f32 / 100.0)
        .collect();
    let mut classifier = model.classifier()?;
    classifier.classify(&window)?;
    let mut times = Vec::with_capacity(windows);
    for _ in 0..windows.max(1) {
        let t = Instant::now();
        classifier.classify(&window)?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
    Ok((pick(0.5), pick(0.95)))
}

/// The row a `bench --child` process prints for the model it loaded.
pub fn measure(model: &Arc<Model>, windows: usize) -> Result<Row> {
    let (median_ms, p95_ms) = time_windows(model, windows)?;
    let (variant, arithmetic) = match model.variant() {
        Some(v) => (v.name.clone(), v.arithmetic.as_str().to_string()),
        None => ("model".to_string(), "-".to_string()),
    };
    Ok(Row {
        variant,
        arithmetic,
        threads: model.threads(),
        load_ms: model.load_time().as_secs_f64() * 1e3,
        median_ms,
        p95_ms,
        windows,
        peak_rss: crate::platform::resident_memory().map_or(0, |(_, peak)| peak),
        kernels: model.kernels().into_iter().collect(),
        fma_units: fma_units_set(),
    })
}

/// Runs one child per (variant, thread count) and collects their rows; a
/// child that fails becomes an error naming the variant.
pub fn run_children(
    exe: &Path,
    manifest_path: &Path,
    variants: &[(String, Vec<Option<u8>>)],
    threads: &[usize],
    windows: usize,
    progress: &crate::progress::Progress,
) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    let runs: usize = variants.iter().map(|(_, units)| units.len()).sum();
    progress.start(runs * threads.len());
    // An emulated build (qemu-user without binfmt) cannot start itself: the
    // children then go through $GENREPI_BENCH_WRAPPER (e.g. qemu-aarch64).
    let wrapper = std::env::var_os("GENREPI_BENCH_WRAPPER").filter(|w| !w.is_empty());
    for (variant, units) in variants {
        for (&t, &units) in threads
            .iter()
            .flat_map(|t| units.iter().map(move |u| (t, u)))
        {
            let mut cmd = match &wrapper {
                Some(w) => {
                    let mut c = std::process::Command::new(w);
                    c.arg(exe);
                    c
                }
                None => std::process::Command::new(exe),
            };
            cmd.arg("--model").arg(manifest_path);
            if variant != "model" {
                cmd.args(["--variant", variant]);
            }
            cmd.args(["--threads", &t.to_string(), "-q", "bench", "--child"])
                .args(["--windows", &windows.to_string()]);
            if let Some(u) = units {
                cmd.env(FMA_UNITS, u.to_string());
            }
            let out = cmd.output().map_err(|e| {
                Error::Config(format!(
                    "cannot run {} for variant {variant}: {e}",
                    exe.display()
                ))
            })?;
            let failed = || {
                let err = String::from_utf8_lossy(&out.stderr);
                Error::Config(format!(
                    "measuring variant {variant} at {t} thread(s) failed: {}",
                    err.lines().last().unwrap_or("no message")
                ))
            };
            if !out.status.success() {
                return Err(failed());
            }
            rows.push(serde_json::from_slice(&out.stdout).map_err(|_| failed())?);
            progress.advance(&match units {
                Some(u) => format!("{variant}, {t} thread(s), {FMA_UNITS}={u}"),
                None => format!("{variant}, {t} thread(s)"),
            });
        }
    }
    progress.finish();
    Ok(rows)
}

/// The rows as a table (`fma`: the [`FMA_UNITS`] a row ran with).
pub fn table(rows: &[Row]) -> String {
    let mut s = format!(
        "{:<10} {:<6} {:>7} {:>4} {:>9} {:>10} {:>10} {:>9}  {}\n",
        "variant",
        "arith",
        "threads",
        "fma",
        "load ms",
        "median ms",
        "p95 ms",
        "peak MiB",
        "kernels"
    );
    for r in rows {
        s += &format!(
            "{:<10} {:<6} {:>7} {:>4} {:>9.0} {:>10.1} {:>10.1} {:>9.0}  {}\n",
            r.variant,
            r.arithmetic,
            r.threads,
            r.fma_units.map_or("-".to_string(), |u| u.to_string()),
            r.load_ms,
            r.median_ms,
            r.p95_ms,
            r.peak_rss as f64 / (1 << 20) as f64,
            r.kernels.join(" ")
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn platform(arch: &'static str, features: &[&'static str]) -> Platform {
        Platform::with_features(arch, features)
    }

    fn row(variant: &str, threads: usize, fma_units: Option<u8>, median_ms: f64) -> Row {
        Row {
            variant: variant.into(),
            arithmetic: "int8".into(),
            threads,
            load_ms: 1.0,
            median_ms,
            p95_ms: median_ms,
            windows: 20,
            peak_rss: 0,
            kernels: vec![],
            fma_units,
        }
    }

    fn measured(rows: Vec<Row>) -> Measurements {
        Measurements {
            cpu: "test".into(),
            key: "test".into(),
            rows,
        }
    }

    // These tests assume TRACT_AVX512_FMA_UNITS is not set where they run
    // (genrepi's tests never set it); with it set, the hand-set value wins.
    #[test]
    fn int8_on_avx512_vnni_is_measured_with_both_tiles() {
        if std::env::var_os(FMA_UNITS).is_some() {
            return;
        }
        let zen4 = platform("x86_64", &["avx2", "avx512vnni"]);
        assert_eq!(fma_units_to_measure("int8", &zen4), [Some(1), Some(2)]);
        assert_eq!(fma_units_to_measure("fp32", &zen4), [None]);
        let avx2 = platform("x86_64", &["avx2"]);
        assert_eq!(fma_units_to_measure("int8", &avx2), [None]);
        let pi5 = platform("aarch64", &["asimddp", "asimdhp"]);
        assert_eq!(fma_units_to_measure("int8", &pi5), [None]);
    }

    #[test]
    fn the_faster_tile_is_followed_per_thread_count() {
        if std::env::var_os(FMA_UNITS).is_some() {
            return;
        }
        let m = measured(vec![
            row("int8", 1, Some(1), 66.7),
            row("int8", 1, Some(2), 49.4),
            row("int8", 2, Some(1), 30.0),
            row("int8", 2, Some(2), 32.3),
            row("fp32", 1, None, 128.3),
        ]);
        let (units, why) = tile_choice(Some(&m), "int8", 1).unwrap();
        assert_eq!(units, 2);
        assert!(
            why.contains("49.4 ms") && why.contains("66.7 ms with 1"),
            "{why}"
        );
        assert_eq!(tile_choice(Some(&m), "int8", 2).unwrap().0, 1);
        // The variant's speed for --variant auto is its faster tile's.
        assert_eq!(m.median_ms("int8", 1), Some(49.4));
        assert_eq!(m.median_ms("int8", 2), Some(30.0));
        // Nothing to choose: a float variant, a thread count not measured,
        // one tile only, no measurements.
        assert!(tile_choice(Some(&m), "fp32", 1).is_none());
        assert!(tile_choice(Some(&m), "int8", 4).is_none());
        let one = measured(vec![row("int8", 1, Some(1), 60.0)]);
        assert!(tile_choice(Some(&one), "int8", 1).is_none());
        assert!(tile_choice(None, "int8", 1).is_none());
    }

    #[test]
    fn rows_cached_before_the_tile_column_still_read() {
        let old = r#"{"variant":"int8","arithmetic":"int8","threads":1,"load_ms":1.0,
            "median_ms":50.0,"p95_ms":55.0,"windows":20,"peak_rss":0,"kernels":[]}"#;
        let r: Row = serde_json::from_str(old).unwrap();
        assert_eq!(r.fma_units, None);
    }
}
