//! `eval` and `features` end to end through the binary, on generated
//! GTZAN-layout folders and (when present) on real clips from gtzan-mini.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use genrepi::audio::FileSource;
use genrepi::frontend::Frontend;
use genrepi::model::Model;
use ndarray::{Array1, Array4};
use ndarray_npy::NpzReader;
use serde_json::Value;

use common::{Rng, repo, temp_dir, write_wav_i16};

const GENRES: [&str; 3] = ["blues", "jazz", "rock"];

use common::run_genrepi as genrepi;

/// GENRES × 2 clips of 7 s (two non-overlapping windows each), a folder
/// that is not a genre and a stray text file.
fn dataset(test: &str) -> PathBuf {
    let dir = temp_dir(test);
    let mut rng = Rng(11);
    for (g, genre) in GENRES.iter().enumerate() {
        std::fs::create_dir_all(dir.join(genre)).unwrap();
        for k in 0..2 {
            let freq = 200.0 * (g + 1) as f32 + 50.0 * k as f32;
            let samples: Vec<i16> = (0..22_050 * 7)
                .map(|i| {
                    let t = i as f32 / 22_050.0;
                    let x =
                        0.5 * (2.0 * std::f32::consts::PI * freq * t).sin() + 0.05 * rng.signed();
                    (x * 20_000.0) as i16
                })
                .collect();
            write_wav_i16(
                &dir.join(genre).join(format!("{genre}.{k:05}.wav")),
                22_050,
                1,
                &samples,
            );
        }
    }
    std::fs::create_dir_all(dir.join("not-a-genre")).unwrap();
    std::fs::write(dir.join("blues/README.txt"), "notes").unwrap();
    dir
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn eval_writes_a_complete_report() {
    let dir = dataset("eval");
    let report = dir.join("report.json");
    let (code, stdout, stderr) = genrepi(&["eval", s(&dir), "--report", s(&report), "--jobs", "2"]);
    assert_eq!(code, 0, "{stderr}");
    for needle in [
        "clip accuracy",
        "window accuracy",
        "per-genre recall",
        "confusion",
        "latency per window",
    ] {
        assert!(stdout.contains(needle), "{needle}: {stdout}");
    }
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    for key in [
        "clip_accuracy",
        "window_accuracy",
        "per_class",
        "confusion",
        "labels",
        "clips",
        "latency_ms",
    ] {
        assert!(r.get(key).is_some(), "report lacks {key}");
    }
    let clips = r["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 6);
    assert!(clips.iter().all(|c| c["windows"] == 2), "{clips:?}");
    let confusion: usize = r["confusion"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|row| {
            row.as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_u64().unwrap() as usize)
        })
        .sum();
    assert_eq!(confusion, 6);
    assert_eq!(r["per_class"]["jazz"]["clips"], 2);
    assert!(r["latency_ms"]["median"].as_f64().unwrap() > 0.0);
    let acc = r["clip_accuracy"].as_f64().unwrap();
    let correct: f64 = clips
        .iter()
        .filter(|c| c["label"] == c["predicted"])
        .count() as f64;
    assert!((acc - correct / 6.0).abs() < 1e-12);
}

#[test]
fn eval_is_the_same_on_one_or_two_workers() {
    let dir = dataset("eval-jobs");
    let run = |jobs: &str| {
        let report = dir.join(format!("r{jobs}.json"));
        let (code, _, stderr) = genrepi(&["eval", s(&dir), "--report", s(&report), "--jobs", jobs]);
        assert_eq!(code, 0, "{stderr}");
        let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
        r["clips"].clone()
    };
    assert_eq!(run("1"), run("2"));
}

#[test]
fn eval_reports_failed_clips_and_exits_nonzero() {
    let dir = dataset("eval-bad");
    std::fs::write(dir.join("rock/broken.wav"), b"RIFF\x00\x00").unwrap();
    let report = dir.join("report.json");
    let (code, stdout, stderr) = genrepi(&["eval", s(&dir), "--report", s(&report)]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("broken.wav"), "{stderr}");
    assert!(stdout.contains("1 clip(s) failed"), "{stdout}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(
        r["clips"].as_array().unwrap().len(),
        6,
        "the good clips are still evaluated"
    );
    assert_eq!(r["failed"].as_array().unwrap().len(), 1);
}

#[test]
fn features_are_exactly_what_the_model_receives() {
    let dir = dataset("features");
    let out = dir.join("feats.npz");
    let (code, stdout, stderr) = genrepi(&["features", s(&dir), "--out", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("12 windows from 6 clips"), "{stdout}");

    let mut npz = NpzReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let x: Array4<f32> = npz.by_name("x").unwrap();
    let y: Array1<i64> = npz.by_name("y").unwrap();
    let clip: Array1<i64> = npz.by_name("clip").unwrap();
    let start_s: Array1<f32> = npz.by_name("start_s").unwrap();
    assert_eq!(x.shape(), &[12, 1, 128, 130]);
    // Labels index the model's labels: blues 0, jazz 5, rock 9.
    assert_eq!(y.to_vec(), vec![0, 0, 0, 0, 5, 5, 5, 5, 9, 9, 9, 9]);
    assert_eq!(clip.to_vec(), vec![0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5]);
    assert!((start_s[1] - 130.0 * 512.0 / 22050.0).abs() < 1e-4);
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("feats.json")).unwrap()).unwrap();
    assert_eq!(meta["clips"].as_array().unwrap().len(), 6);
    assert!(
        meta["clips"][2]
            .as_str()
            .unwrap()
            .ends_with("jazz.00000.wav")
    );

    // Window 3 (jazz.00000, second window) recomputed through the library.
    let model = Model::load(&common::tiny_model(), 1).unwrap();
    let cfg = model.manifest().features.clone();
    let mut frontend = Frontend::new(&cfg, cfg.frames).unwrap();
    let mut source = FileSource::open(&dir.join("jazz/jazz.00000.wav")).unwrap();
    let mut expected = Vec::new();
    frontend
        .run(&mut source, &mut |w| {
            let mut input = vec![0.0; model.input_len()];
            model.prepare_input(w.values, &mut input, &mut Vec::new());
            expected.push(input);
            Ok(())
        })
        .unwrap();
    let got: Vec<f32> = x.index_axis(ndarray::Axis(0), 5).iter().copied().collect();
    assert_eq!(got, expected[1]);
}

#[test]
fn features_file_loads_in_numpy() {
    let dir = dataset("features-numpy");
    let out = dir.join("feats.npz");
    let (code, _, stderr) = genrepi(&["features", s(&dir), "--out", s(&out)]);
    assert_eq!(code, 0, "{stderr}");
    let check = "import numpy as np, sys; d = np.load(sys.argv[1]); \
                 assert d['x'].shape == (12, 1, 128, 130) and d['x'].dtype == np.float32; \
                 assert d['y'].dtype == np.int64; print('ok')";
    match Command::new(common::python())
        .args(["-c", check, s(&out)])
        .output()
    {
        Ok(o) if o.status.success() => assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "ok"),
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'numpy'") => {
            common::skip_without_python("numpy")
        }
        Ok(o) => panic!(
            "numpy could not read the file: {}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => common::skip_without_python("python3"),
    }
}

#[test]
fn resized_three_channel_model_runs() {
    let dir = dataset("rgb");
    let model = repo("tests/fixtures/models/tiny-rgb.toml");
    let (code, stdout, stderr) = genrepi(&[
        "--model",
        s(&model),
        "replay",
        "--json",
        s(&dir.join("rock/rock.00001.wav")),
    ]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(
        lines.len(),
        5,
        "4 windows at a 1 s hop plus the verdict: {stdout}"
    );
    let total: f64 = lines[0]["probs"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-3);
    assert_eq!(lines[4]["windows"], 4);
}

/// The eval path on real GTZAN audio: two clips of every genre.
#[test]
fn eval_on_real_gtzan_clips() {
    let Some(gtzan) = common::gtzan_mini() else {
        return;
    };
    let dir = temp_dir("gtzan-subset");
    let labels = common::GTZAN_GENRES;
    for genre in labels {
        std::fs::create_dir_all(dir.join(genre)).unwrap();
        for k in 0..2 {
            let name = format!("{genre}.{k:05}.wav");
            std::os::unix::fs::symlink(gtzan.join(genre).join(&name), dir.join(genre).join(&name))
                .unwrap();
        }
    }
    let report = dir.join("report.json");
    let (code, _, stderr) = genrepi(&["eval", s(&dir), "--report", s(&report)]);
    assert_eq!(code, 0, "{stderr}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    let clips = r["clips"].as_array().unwrap();
    assert_eq!(clips.len(), 20);
    // 30 s clips: 9 non-overlapping 3.09 s windows each.
    assert!(clips.iter().all(|c| c["windows"] == 9), "{clips:?}");
}
