//! The live pipeline (queue, deadline, silence gate, smoothing, hysteresis)
//! driven by file input, without ALSA: the same `Pipeline` a microphone
//! feeds, with `FileOpener` in place of the device.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{Rng, temp_dir, tiny_model, write_wav_i16};
use genrepi::audio::FileOpener;
use genrepi::audio::FileSource;
use genrepi::frontend::{Frontend, classify_stream};
use genrepi::model::Model;
use genrepi::scheduler::{Counters, Hop, LiveSettings, Pipeline, Smoother, Verdict};

/// What the sink saw of one verdict.
#[derive(Debug, Clone)]
struct Seen {
    end_s: f64,
    level_db: f32,
    probs: Option<Vec<f32>>,
    smoothed: Option<(usize, f32)>,
}

/// Noise-like music: a different tone mix every second.
fn music(seconds: f64, seed: u64) -> Vec<i16> {
    let mut rng = Rng(seed);
    let n = (22_050.0 * seconds) as usize;
    (0..n)
        .map(|i| {
            let t = i as f64 / 22_050.0;
            let f = 110.0 * (1 + (t as usize % 5)) as f64;
            let tone = (2.0 * std::f64::consts::PI * f * t).sin() * 6000.0;
            (tone + rng.signed() as f64 * 3000.0) as i16
        })
        .collect()
}

fn wav(dir: &Path, name: &str, samples: &[i16]) -> PathBuf {
    let path = dir.join(name);
    write_wav_i16(&path, 22_050, 1, samples);
    path
}

/// Runs `file` through the live pipeline at `speed` with `settings`; the
/// sink sleeps `consumer` per verdict. Returns the verdicts and counters.
fn live(
    file: &Path,
    speed: f64,
    settings: LiveSettings,
    consumer: Duration,
) -> (Vec<Seen>, Arc<Counters>) {
    let model = Model::load(&tiny_model(), 1).unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let counters = Arc::new(Counters::default());
    let sink_seen = seen.clone();
    let sink = Box::new(move |v: &Verdict<'_>| {
        sink_seen.lock().unwrap().push(Seen {
            end_s: v.end_s,
            level_db: v.level_db,
            probs: v.result.as_ref().map(|c| c.probs.to_vec()),
            smoothed: v.result.as_ref().map(|c| (c.smoothed, c.smoothed_p)),
        });
        std::thread::sleep(consumer);
    });
    let pipeline = Pipeline::start(
        &settings,
        model.classifier().unwrap(),
        Box::new(FileOpener::new(file, speed)),
        counters.clone(),
        sink,
        true,
    )
    .unwrap();
    let started = Instant::now();
    while !pipeline.finished() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "pipeline hangs"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(pipeline.take_failure().is_none());
    assert!(pipeline.stop(Duration::from_secs(1)));
    let seen = seen.lock().unwrap().clone();
    (seen, counters)
}

fn settings(hop: f64) -> LiveSettings {
    LiveSettings {
        hop: Hop::Fixed(hop),
        smoothing: 1,
        ..LiveSettings::default()
    }
}

/// The batch path (`replay`) on the same file: (end_s, probs) per window.
fn batch(file: &Path, hop: f64) -> Vec<(f64, Vec<f32>)> {
    let model = Model::load(&tiny_model(), 1).unwrap();
    let cfg = model.manifest().features.clone();
    let mut frontend = Frontend::new(&cfg, cfg.hop_frames_for(hop)).unwrap();
    let mut classifier = model.classifier().unwrap();
    let mut out = Vec::new();
    let mut source = FileSource::open(file).unwrap();
    classify_stream(&mut frontend, &mut classifier, &mut source, |p| {
        out.push((p.end_s, p.probs.to_vec()))
    })
    .unwrap();
    out
}

#[test]
fn unpaced_file_input_gives_replays_windows_and_probabilities() {
    let dir = temp_dir("pipeline-unpaced");
    let file = wav(&dir, "music.wav", &music(12.0, 1));
    let (seen, counters) = live(&file, 0.0, settings(0.5), Duration::ZERO);
    let reference = batch(&file, 0.5);
    assert_eq!(seen.len(), reference.len());
    for (s, (end_s, probs)) in seen.iter().zip(&reference) {
        assert!((s.end_s - end_s).abs() < 1e-6, "{} vs {end_s}", s.end_s);
        assert_eq!(s.probs.as_ref().unwrap(), probs);
    }
    assert_eq!(counters.dropped(), 0);
}

#[test]
fn a_paced_file_faster_than_the_model_drops_the_oldest_windows() {
    let dir = temp_dir("pipeline-drop");
    let file = wav(&dir, "music.wav", &music(10.0, 2));
    let (seen, counters) = live(&file, 40.0, settings(0.1), Duration::from_millis(20));
    let windows = counters.windows.load(Ordering::Relaxed);
    let dropped = counters.dropped_full.load(Ordering::Relaxed);
    assert!(dropped * 2 > windows, "{dropped} of {windows} dropped");
    assert_eq!(seen.len() as u64 + counters.dropped(), windows);
    // The newest window is always classified: the queue dropped older ones.
    let last = batch(&file, 0.1).last().unwrap().0;
    assert!((seen.last().unwrap().end_s - last).abs() < 1e-6);
}

#[test]
fn unpaced_input_waits_for_a_slow_model_and_drops_nothing() {
    let dir = temp_dir("pipeline-wait");
    let file = wav(&dir, "music.wav", &music(6.0, 3));
    let (seen, counters) = live(&file, 0.0, settings(0.1), Duration::from_millis(10));
    assert_eq!(counters.dropped(), 0);
    assert_eq!(seen.len(), batch(&file, 0.1).len());
}

#[test]
fn windows_that_waited_past_the_deadline_are_skipped() {
    let dir = temp_dir("pipeline-deadline");
    let file = wav(&dir, "music.wav", &music(10.0, 4));
    let s = LiveSettings {
        queue: 1024,
        deadline: Some(Duration::from_millis(30)),
        ..settings(0.1)
    };
    let (seen, counters) = live(&file, 20.0, s, Duration::from_millis(25));
    let late = counters.dropped_late.load(Ordering::Relaxed);
    assert_eq!(counters.dropped_full.load(Ordering::Relaxed), 0);
    assert!(late > 0, "none late");
    assert_eq!(
        seen.len() as u64 + late,
        counters.windows.load(Ordering::Relaxed)
    );
}

#[test]
fn smoothing_and_hysteresis_follow_the_raw_probabilities() {
    let dir = temp_dir("pipeline-smooth");
    let file = wav(&dir, "music.wav", &music(15.0, 5));
    for (span, margin) in [(4, 0.1f32), (1, 0.0), (3, 1.0)] {
        let s = LiveSettings {
            smoothing: span,
            hysteresis: margin,
            ..settings(0.5)
        };
        let (seen, _) = live(&file, 0.0, s, Duration::ZERO);
        let mut reference = Smoother::new(10, span, margin);
        for v in &seen {
            let expected = reference.update(v.probs.as_ref().unwrap());
            let (genre, p) = v.smoothed.unwrap();
            assert_eq!(genre, expected.0, "span {span}, margin {margin}");
            assert!((p - expected.1).abs() < 1e-6);
        }
        if margin >= 1.0 {
            // A margin of 1 never lets go of the first answer.
            assert!(
                seen.iter()
                    .all(|v| v.smoothed.unwrap().0 == seen[0].smoothed.unwrap().0)
            );
        }
    }
}

#[test]
fn silence_is_reported_not_classified_and_resets_the_smoothing() {
    let dir = temp_dir("pipeline-silence");
    let mut samples = music(6.0, 6);
    samples.extend(std::iter::repeat_n(0i16, 22_050 * 6));
    samples.extend(music(6.0, 7));
    let file = wav(&dir, "gap.wav", &samples);
    let s = LiveSettings {
        smoothing: 8,
        hysteresis: 0.0,
        ..settings(1.0)
    };
    let (seen, _) = live(&file, 0.0, s, Duration::ZERO);
    let silent: Vec<_> = seen.iter().filter(|v| v.probs.is_none()).collect();
    assert!(!silent.is_empty(), "no silent window");
    assert!(silent.iter().all(|v| v.level_db < -60.0));
    // The first window after the silence starts the average afresh.
    let after = seen
        .iter()
        .skip_while(|v| v.probs.is_some())
        .find(|v| v.probs.is_some())
        .unwrap();
    let probs = after.probs.as_ref().unwrap();
    let (genre, p) = after.smoothed.unwrap();
    assert!(
        (p - probs[genre]).abs() < 1e-6,
        "smoothed {p}, raw {}",
        probs[genre]
    );
}

/// The binary: `listen --input FILE --speed 0 --json` prints, for every
/// window, what `replay --json` prints for it (same end, same probabilities),
/// and ends with the file.
#[test]
fn listen_input_prints_what_replay_prints_for_each_window() {
    let dir = temp_dir("pipeline-binary");
    let file = wav(&dir, "music.wav", &music(9.0, 8));
    let run = |args: &[&str]| -> Vec<serde_json::Value> {
        let out = common::genrepi().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    };
    let f = file.to_str().unwrap();
    let listened = run(&["listen", "--input", f, "--speed", "0", "--json"]);
    let replayed = run(&["replay", "--json", f]);
    let windows = &replayed[..replayed.len() - 1];
    assert_eq!(listened.len(), windows.len());
    for (l, r) in listened.iter().zip(windows) {
        assert_eq!(l["end_s"], r["end_s"]);
        assert_eq!(l["probs"], r["probs"]);
    }
}

/// `--threads 1` on the command line overrides a config file's `threads`
/// (the default value is no longer mistaken for "not given").
#[test]
fn threads_on_the_command_line_override_the_config_file() {
    let dir = temp_dir("pipeline-threads");
    let file = wav(&dir, "music.wav", &music(4.0, 9));
    let config = dir.join("genrepi.toml");
    std::fs::write(&config, "threads = 2\n").unwrap();
    let threads = |extra: &[&str]| -> String {
        let out = common::genrepi()
            .args(["-v", "listen", "--config", config.to_str().unwrap()])
            .args(["--input", file.to_str().unwrap(), "--speed", "0"])
            .args(extra)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "{stderr}");
        stderr
    };
    assert!(threads(&[]).contains("2 thread(s)"));
    assert!(threads(&["--threads", "1"]).contains("1 thread(s)"));
}
