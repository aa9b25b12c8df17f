//! Benchmark: log-mel features for 30 s of audio.
//!
//!     cargo run --release --example bench_features [CLIP.wav]
//!
//! Decodes the clip (default: ../shared/gtzan-mini/blues/blues.00000.wav,
//! else 30 s of generated noise), then times the mel stream over its first
//! 30 s at 22050 Hz with non-overlapping and with 1-s-hop windows, and the
//! whole front-end (downmix + resampling + mel) from 44.1 kHz stereo.
//! Prints the median of 30 runs.

use std::path::PathBuf;
use std::time::Instant;

use genrepi::audio::{AudioSource, FileSource, MemorySource, StreamFormat};
use genrepi::features::{FeatureConfig, MelStream};
use genrepi::frontend::Frontend;

const RUNS: usize = 30;

fn median_ms(mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut times: Vec<f64> = (0..RUNS)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[RUNS / 2]
}

fn main() -> anyhow::Result<()> {
    let cfg = FeatureConfig::default();
    let n = 30 * cfg.sample_rate as usize;
    let default = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/gtzan-mini/blues/blues.00000.wav");
    let path = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .unwrap_or(default);
    let (what, mut audio) = if path.is_file() {
        let mut source = FileSource::open(&path)?;
        anyhow::ensure!(
            source.format().channels == 1 && source.format().sample_rate == cfg.sample_rate,
            "{}: need a mono {} Hz clip",
            path.display(),
            cfg.sample_rate
        );
        let (mut all, mut buf) = (Vec::new(), Vec::new());
        while source.read_chunk(&mut buf)? {
            all.extend_from_slice(&buf);
        }
        (path.display().to_string(), all)
    } else {
        let mut x: u64 = 1;
        let noise = (0..n)
            .map(|_| {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                (x >> 40) as f32 / 8388608.0 - 1.0
            })
            .collect();
        ("generated noise".to_string(), noise)
    };
    audio.resize(n, 0.0);
    println!(
        "input: first 30 s of {what} ({n} samples at {} Hz)",
        cfg.sample_rate
    );

    for (label, hop) in [
        ("non-overlapping windows", cfg.frames),
        ("1 s hop windows", cfg.hop_frames_for(1.0)),
    ] {
        let mut stream = MelStream::new(&cfg, hop)?;
        let mut windows = 0;
        let ms = median_ms(|| {
            stream.reset();
            windows = 0;
            for chunk in audio.chunks(4096) {
                stream.push(chunk, |_| windows += 1);
            }
        });
        println!(
            "features, {label}: {ms:.2} ms per 30 s ({:.0}x real time; {} frames, {windows} windows)",
            30_000.0 / ms,
            stream.frames_done()
        );
    }

    // Same audio as 44.1 kHz stereo: downmix + rubato FFT resampling + mel.
    let stereo: Vec<f32> = audio
        .iter()
        .flat_map(|&s| [s, s, s, s]) // 2x rate (nearest), 2 channels
        .collect();
    let format = StreamFormat {
        sample_rate: 2 * cfg.sample_rate,
        channels: 2,
    };
    let mut frontend = Frontend::new(&cfg, cfg.frames)?;
    let ms = median_ms(|| {
        let mut source = MemorySource::new("stereo", format, stereo.clone(), vec![4096]);
        let _ = frontend.run(&mut source, &mut |_| Ok(()));
    });
    println!(
        "front-end from 44.1 kHz stereo (downmix + resample + features): {ms:.2} ms per 30 s ({:.0}x real time)",
        30_000.0 / ms
    );
    Ok(())
}
