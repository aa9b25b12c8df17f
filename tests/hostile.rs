//! Hostile and careless input through the real binary, one test per class
//! of issue 14: sizes from outside, non-regular files, outputs, model
//! outputs that are not probabilities, and names that are not text. Each
//! bad input costs one line and only itself; nothing panics or hangs.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{repo, temp_dir, wait_within};

/// Runs `cmd` to completion within 60 s; returns exit code, stdout, stderr.
fn run(cmd: Command) -> (i32, String, String) {
    common::run_within(cmd, Duration::from_secs(60))
}

fn genrepi(args: &[&str]) -> Command {
    let mut cmd = common::genrepi();
    cmd.args(args);
    cmd
}

use common::message_lines as lines;

fn noise_wav(dir: &Path, name: &str, seconds: f32) -> PathBuf {
    common::noise_wav(dir, name, seconds, 7)
}

/// A 16-bit WAV header with any rate, channel count and bits, and `frames`
/// frames of data.
fn wav_with(path: &Path, rate: u32, channels: u16, bits: u16, data_bytes: usize) {
    let block = channels.wrapping_mul(bits / 8);
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_bytes as u32).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.wrapping_mul(block as u32).to_le_bytes());
    b.extend_from_slice(&block.to_le_bytes());
    b.extend_from_slice(&bits.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&(data_bytes as u32).to_le_bytes());
    b.resize(b.len() + data_bytes, 0x11);
    std::fs::write(path, b).unwrap();
}

/// Class 1: header sizes out of range cost one line each, at once, and the
/// good files of the same batch are still done; so does a panic inside a
/// decoder (symphonia's WAV reader overflows on 65535 channels in debug
/// builds).
#[test]
fn out_of_range_headers_and_decoder_panics_cost_only_their_file() {
    let dir = temp_dir("hostile-headers");
    let good1 = noise_wav(&dir, "good1.wav", 4.0);
    let good2 = noise_wav(&dir, "good2.wav", 4.0);
    let cases = [
        (
            "rate-max.wav",
            u32::MAX,
            1,
            16,
            "sample rate (Hz) 4294967295 is outside",
        ),
        ("rate-1.wav", 1, 1, 16, "sample rate (Hz) 1 is outside"),
        ("rate-0.wav", 0, 1, 16, "rate-0.wav"),
        (
            "channels-65535.wav",
            44_100,
            65_535,
            32,
            "channels-65535.wav",
        ),
        ("channels-0.wav", 44_100, 0, 16, "channels-0.wav"),
    ];
    for (name, rate, channels, bits, says) in cases {
        let bad = dir.join(name);
        wav_with(&bad, rate, channels, bits, 4096);
        let started = Instant::now();
        let args = ["replay", good1.to_str().unwrap(), bad.to_str().unwrap()];
        let mut cmd = genrepi(&args);
        cmd.arg(&good2);
        let (code, stdout, stderr) = run(cmd);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stdout.contains("good1.wav: "), "{name}: {stdout}");
        assert!(stdout.contains("good2.wav: "), "{name}: {stdout}");
        let errors = lines(&stderr);
        let named: Vec<_> = errors.iter().filter(|l| l.contains(name)).collect();
        assert_eq!(named.len(), 1, "{name}: one line: {stderr}");
        assert!(named[0].contains(says), "{name}: {}", named[0]);
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{name} took {:?}",
            started.elapsed()
        );
    }
}

/// Class 1 and 6: every numeric option has a range, checked before the
/// model loads, and a bad value is a usage error (exit 2) in one message.
#[test]
fn options_out_of_range_are_usage_errors() {
    let cases: &[(&[&str], &str)] = &[
        (&["listen", "--rate", "4294967295"], "outside 1000..=768000"),
        (&["listen", "--queue", "1000000000"], "outside 1..=1024"),
        (
            &["listen", "--queue", "18446744073709551615"],
            "outside 1..=1024",
        ),
        (
            &["listen", "--deadline", "1e300"],
            "deadline 1e300 is outside",
        ),
        (&["listen", "--deadline", "nan"], "outside 0.01..=3600"),
        (&["listen", "--silence-db", "inf"], "outside -200..=0"),
        (&["listen", "--silence-db", "nan"], "outside -200..=0"),
        (&["listen", "--hysteresis", "2"], "outside 0..=1"),
        (&["listen", "--smoothing", "0"], "outside 1..=1000"),
        (&["listen", "--channels", "65"], "outside 1..=64"),
        (&["listen", "--hop", "1e300"], "outside 0.01..=3600"),
        (&["listen", "--stall-timeout", "0"], "outside 0.1..=3600"),
        (&["listen", "--max-memory", "1e300G"], "outside 1M..=1T"),
        (&["--threads", "100000", "info"], "outside 1..=256"),
        (&["--threads", "0", "info"], "outside 1..=256"),
        (&["eval", "--jobs", "100000", "."], "outside 1..=256"),
        (&["replay", "--hop", "0", "x.wav"], "outside 0.01..=3600"),
        (&["bench", "--windows", "0"], "outside 1..=10000"),
    ];
    for (args, says) in cases {
        let (code, _, stderr) = run(genrepi(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?} says {says:?}: {stderr}");
    }
}

use common::edited_tiny_model as edited_model;

/// Class 1 and 2: manifest sizes have ranges, input shapes have exactly
/// four dimensions, and a model that is not a regular file is refused at
/// once, without reading it.
#[test]
fn manifests_with_huge_sizes_or_odd_files_are_refused_at_once() {
    let fifo_dir = temp_dir("hostile-fifo");
    let fifo = fifo_dir.join("model.onnx");
    common::mkfifo(&fifo);
    let fifo_manifest = fifo_dir.join("fifo.toml");
    common::mkfifo(&fifo_manifest);
    let big = "9223372036854775807";
    let cases: Vec<(String, PathBuf, &str)> = vec![
        (
            "frames".into(),
            edited_model("m-frames", |s| {
                s.replace("frames = 130", &format!("frames = {big}"))
            }),
            "frames 9223372036854775807 is outside 1..=4096",
        ),
        (
            "n_mels".into(),
            edited_model("m-mels", |s| {
                s.replace("n_mels = 128", &format!("n_mels = {big}"))
            }),
            "outside 1..=1024",
        ),
        (
            "n_fft".into(),
            edited_model("m-fft", |s| {
                s.replace("n_fft = 2048", &format!("n_fft = {big}"))
            }),
            "outside 16..=65536",
        ),
        (
            "5 dims".into(),
            edited_model("m-5d", |s| {
                s.replace("shape = [1, 1, 128, 130]", "shape = [1, 1, 128, 130, 7]")
            }),
            "input shape must have 4 dimensions [1, C, H, W], got 5",
        ),
        (
            "huge input".into(),
            edited_model("m-side", |s| {
                s.replace("shape = [1, 1, 128, 130]", "shape = [1, 3, 4096, 4096]")
            }),
            "input values 50331648 is outside",
        ),
        (
            "/dev/zero model".into(),
            edited_model("m-zero", |s| {
                s.replace("model = \"tiny.onnx\"", "model = \"/dev/zero\"")
            }),
            "not a regular file",
        ),
        (
            "FIFO model".into(),
            edited_model("m-fifo", |s| {
                s.replace(
                    "model = \"tiny.onnx\"",
                    &format!("model = \"{}\"", fifo.display()),
                )
            }),
            "not a regular file",
        ),
        ("FIFO manifest".into(), fifo_manifest, "not a regular file"),
        (
            "/dev/zero manifest".into(),
            "/dev/zero".into(),
            "not a regular file",
        ),
    ];
    for (what, manifest, says) in cases {
        let started = Instant::now();
        let (code, _, stderr) = run(genrepi(&["--model", manifest.to_str().unwrap(), "info"]));
        assert_eq!(code, 1, "{what}: {stderr}");
        assert_eq!(lines(&stderr).len(), 1, "{what}: one line: {stderr}");
        assert!(stderr.contains(says), "{what} says {says:?}: {stderr}");
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{what}: {:?}",
            started.elapsed()
        );
    }
}

/// Class 5: a model whose output is NaN, or "probabilities" that are not,
/// gives an error per window and never a verdict.
#[test]
fn model_outputs_that_are_not_probabilities_are_errors_not_verdicts() {
    let dir = temp_dir("hostile-outputs");
    let clip = noise_wav(&dir, "clip.wav", 4.0);
    let nan = repo("tests/fixtures/models/nan-out.toml");
    let probs = edited_model("m-probs", |s| {
        s.replace("output = \"logits\"", "output = \"probabilities\"")
    });
    for (model, says) in [
        (&nan, "not a finite number"),
        (&probs, "output = \"probabilities\""),
    ] {
        let (code, stdout, stderr) = run(genrepi(&[
            "--model",
            model.to_str().unwrap(),
            "replay",
            clip.to_str().unwrap(),
        ]));
        assert_eq!(code, 1, "{stderr}");
        assert!(stdout.is_empty(), "no verdict: {stdout}");
        assert!(stderr.contains(says), "{says:?}: {stderr}");
        assert!(
            stderr.contains("clip.wav: window at 0.00 s: "),
            "names it: {stderr}"
        );
        let data = temp_dir("hostile-outputs-eval");
        std::fs::create_dir_all(data.join("rock")).unwrap();
        std::fs::copy(&clip, data.join("rock/a.wav")).unwrap();
        let (code, stdout, stderr) = run(genrepi(&[
            "--model",
            model.to_str().unwrap(),
            "eval",
            data.to_str().unwrap(),
        ]));
        assert_eq!(code, 1, "{stderr}");
        assert!(
            stdout.contains("(0 clips, 0 windows)"),
            "not scored: {stdout}"
        );
    }
}

/// Class 3: outputs. A closed stdout is a normal end and loses no report;
/// a full one is one line and exit 1; a broken stderr never stops a batch;
/// `features` refuses an output its sidecar would overwrite.
#[test]
fn outputs_fail_cleanly_and_lose_nothing() {
    let dir = temp_dir("hostile-out");
    std::fs::create_dir_all(dir.join("data/rock")).unwrap();
    noise_wav(&dir.join("data/rock"), "a.wav", 4.0);
    let data = dir.join("data");
    let report = dir.join("report.json");

    // eval ... | (reader gone at once)
    let mut cmd = genrepi(&["eval", data.to_str().unwrap(), "--report"]);
    cmd.arg(&report)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stdout.take());
    let out = wait_within(child, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "closed pipe: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert!(json.is_object());

    // > /dev/full
    for args in [vec!["info"], vec!["replay", "__clip__"]] {
        let clip = data.join("rock/a.wav");
        let args: Vec<&str> = args
            .iter()
            .map(|a| {
                if *a == "__clip__" {
                    clip.to_str().unwrap()
                } else {
                    a
                }
            })
            .collect();
        let mut cmd = genrepi(&args);
        cmd.stdout(std::fs::File::create("/dev/full").unwrap())
            .stderr(Stdio::piped());
        let out = wait_within(cmd.spawn().unwrap(), Duration::from_secs(60));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(lines(&stderr).len(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("stdout"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    // A broken stderr: the batch is still done.
    let bad = dir.join("bad.wav");
    std::fs::write(&bad, b"not audio at all").unwrap();
    let good = data.join("rock/a.wav");
    let mut cmd = genrepi(&["replay", bad.to_str().unwrap(), good.to_str().unwrap()]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    drop(child.stderr.take());
    let out = wait_within(child, Duration::from_secs(60));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("a.wav: "), "{stdout}");

    // features --out X.json would be overwritten by its own sidecar.
    let precious = dir.join("precious.json");
    std::fs::write(&precious, "{\"keep\": true}").unwrap();
    let (code, _, stderr) = run(genrepi(&[
        "features",
        data.to_str().unwrap(),
        "--out",
        precious.to_str().unwrap(),
    ]));
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("must end in .npz"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&precious).unwrap(),
        "{\"keep\": true}"
    );
    // A good run leaves no temporary files.
    let out = dir.join("f.npz");
    let (code, _, stderr) = run(genrepi(&[
        "features",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(code, 0, "{stderr}");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Class 6: folders as files, and names with newlines or escape codes
/// printed escaped.
#[test]
fn folders_and_control_characters_are_reported_plainly() {
    let dir = temp_dir("hostile-names");
    let (code, _, stderr) = run(genrepi(&["replay", dir.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is a folder"), "{stderr}");
    let (code, _, stderr) = run(genrepi(&["--model", dir.to_str().unwrap(), "info"]));
    assert_eq!(code, 1);
    assert!(stderr.contains("is a folder"), "{stderr}");

    let odd = noise_wav(&dir, "a\nfake line \u{1b}[31m.wav", 4.0);
    let (code, stdout, stderr) = run(genrepi(&["replay", odd.to_str().unwrap()]));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stdout.contains('\u{1b}'), "{stdout:?}");
    assert!(stdout.contains("a\\nfake line \\u{1b}[31m.wav"), "{stdout}");
    assert!(stdout.lines().all(|l| l.contains("a\\nfake")), "{stdout}");
    let missing = dir.join("gone\n.wav");
    let (code, _, stderr) = run(genrepi(&["replay", missing.to_str().unwrap()]));
    assert_eq!(code, 1);
    assert_eq!(lines(&stderr).len(), 1, "{stderr:?}");
}
