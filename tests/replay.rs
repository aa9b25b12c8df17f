//! `genrepi replay` output and pacing, through the binary.

mod common;

use std::time::Instant;

use serde_json::Value;

use common::{Rng, temp_dir, write_wav_i16};

fn replay(args: &[&str]) -> (i32, String, String) {
    let out = common::genrepi().arg("replay").args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// A 44.1 kHz stereo clip of `seconds`: exercises downmix and resampling.
fn stereo_clip(name: &str, seconds: f32) -> std::path::PathBuf {
    let path = temp_dir(name).join(format!("{name}.wav"));
    let mut rng = Rng(5);
    let samples: Vec<i16> = (0..(44_100.0 * seconds) as usize * 2)
        .map(|_| (rng.signed() * 6000.0) as i16)
        .collect();
    write_wav_i16(&path, 44_100, 2, &samples);
    path
}

#[test]
fn json_lines_have_the_documented_fields() {
    let clip = stereo_clip("json", 6.0);
    let (code, stdout, stderr) = replay(&["--json", clip.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 6 s: windows start at 0, 1, 2 s (a 3.09-s window needs 3.09 s of audio).
    assert_eq!(lines.len(), 4, "{stdout}");
    for (k, w) in lines[..3].iter().enumerate() {
        let keys: Vec<&String> = w.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["file", "start_s", "end_s", "top", "probs"]);
        let start = w["start_s"].as_f64().unwrap();
        assert!(
            (start - k as f64 * 43.0 * 512.0 / 22050.0).abs() < 1e-3,
            "{start}"
        );
        assert!((w["end_s"].as_f64().unwrap() - start - 68096.0 / 22050.0).abs() < 1e-3);
        assert_eq!(w["probs"].as_object().unwrap().len(), 10);
    }
    let verdict = &lines[3];
    let keys: Vec<&String> = verdict.as_object().unwrap().keys().collect();
    assert_eq!(keys, ["file", "genre", "probs", "windows"]);
    assert_eq!(verdict["windows"], 3);
}

#[test]
fn realtime_replay_is_paced() {
    let clip = stereo_clip("paced", 3.5);
    let started = Instant::now();
    let (code, stdout, stderr) = replay(&["--realtime", "--json", clip.to_str().unwrap()]);
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(code, 0, "{stderr}");
    // listen's lines, through listen's pipeline: a smoothed verdict a window.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    assert!(stdout.contains("\"smoothed\""), "{stdout}");
    // Paced: cannot finish before the audio's own duration has passed.
    assert!(elapsed >= 3.4, "3.5 s of audio replayed in {elapsed:.2} s");
}

#[test]
fn real_clip_gives_a_window_every_second() {
    let Some(gtzan) = common::gtzan_mini() else {
        return;
    };
    let clip = gtzan.join("metal/metal.00002.wav");
    let (code, stdout, stderr) = replay(&[clip.to_str().unwrap()]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 28, "27 windows + verdict for 30 s: {stdout}");
    assert!(lines[27].ends_with("over 27 window(s)"), "{}", lines[27]);
}

fn info_model_name(cmd: &mut std::process::Command) -> String {
    let out = cmd.arg("info").output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    stdout
        .lines()
        .next()
        .unwrap_or("")
        .trim_start_matches("model:")
        .trim()
        .to_string()
}

#[test]
fn model_is_found_by_flag_then_env_then_default() {
    let rgb = common::repo("tests/fixtures/models/tiny-rgb.toml");
    let rgb_onnx = common::repo("tests/fixtures/models/tiny-rgb.onnx");
    // A working folder whose models/default.toml is the tiny model (the
    // shipped default is a ResNet-152, too slow to load here under qemu).
    let elsewhere = temp_dir("lookup");
    std::fs::create_dir_all(elsewhere.join("models/tiny")).unwrap();
    std::fs::copy(
        common::repo("models/tiny/tiny.onnx"),
        elsewhere.join("models/tiny/tiny.onnx"),
    )
    .unwrap();
    let tiny = std::fs::read_to_string(common::tiny_model()).unwrap();
    let default = elsewhere.join("models/default.toml");
    std::fs::write(
        &default,
        tiny.replace("model = \"tiny.onnx\"", "model = \"tiny/tiny.onnx\""),
    )
    .unwrap();
    let run = || {
        let mut c = common::genrepi();
        c.current_dir(&elsewhere).env_remove("GENREPI_MODEL");
        c
    };
    assert_eq!(info_model_name(&mut run()), "tiny-test");
    assert_eq!(
        info_model_name(run().env("GENREPI_MODEL", &rgb)),
        "tiny-rgb-test"
    );
    assert_eq!(
        info_model_name(run().arg("--model").arg(&rgb_onnx)),
        "tiny-rgb-test"
    );
    assert_eq!(
        info_model_name(
            run()
                .env("GENREPI_MODEL", &rgb)
                .arg("--model")
                .arg(&default)
        ),
        "tiny-test",
        "--model wins over GENREPI_MODEL"
    );
}
