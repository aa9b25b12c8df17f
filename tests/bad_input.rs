//! Bad input through the real binary: one clear line naming the file and the
//! cause, a non-zero exit, never a panic, and the rest of a batch still done.

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{Rng, repo, temp_dir, write_wav_f32, write_wav_i16};

fn genrepi(args: &[&std::ffi::OsStr]) -> Output {
    common::genrepi().args(args).output().unwrap()
}

fn replay(files: &[&Path]) -> (i32, String, String) {
    let mut args: Vec<&std::ffi::OsStr> = vec!["replay".as_ref()];
    args.extend(files.iter().map(|f| f.as_os_str()));
    let out = genrepi(&args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
    )
}

use common::message_lines;

/// Asserts one error line naming `file` and containing `cause`, and exit 1.
fn assert_fails(file: &Path, cause: &str) {
    let (code, _, stderr) = replay(&[file]);
    assert_eq!(code, 1, "{}: exit code; stderr: {stderr}", file.display());
    let errors = message_lines(&stderr);
    assert_eq!(errors.len(), 1, "one line expected: {stderr}");
    assert!(
        errors[0].contains(&file.display().to_string()),
        "names the file: {}",
        errors[0]
    );
    assert!(errors[0].contains(cause), "says {cause:?}: {}", errors[0]);
}

fn noise_wav(dir: &Path, name: &str, seconds: f32) -> PathBuf {
    common::noise_wav(dir, name, seconds, 3)
}

#[test]
fn missing_file() {
    let dir = temp_dir("missing");
    assert_fails(&dir.join("nope.wav"), "cannot read");
}

#[test]
fn empty_file() {
    let dir = temp_dir("empty");
    let path = dir.join("empty.wav");
    std::fs::write(&path, b"").unwrap();
    assert_fails(&path, "no audio samples");
}

#[test]
fn wav_with_no_frames() {
    let dir = temp_dir("noframes");
    let path = dir.join("header-only.wav");
    write_wav_i16(&path, 22_050, 1, &[]);
    assert_fails(&path, "no audio samples");
}

#[test]
fn corrupt_bytes() {
    let dir = temp_dir("corrupt");
    let path = dir.join("garbage.wav");
    let mut rng = Rng(9);
    let bytes: Vec<u8> = (0..50_000).map(|_| rng.next_u64() as u8).collect();
    std::fs::write(&path, bytes).unwrap();
    assert_fails(&path, "unsupported or unrecognised");
}

#[test]
fn unsupported_format() {
    let dir = temp_dir("unsupported");
    let path = dir.join("notes.txt");
    std::fs::write(&path, "this is not audio\n".repeat(100)).unwrap();
    assert_fails(&path, "unsupported or unrecognised");
}

#[test]
fn truncated_wav() {
    let dir = temp_dir("truncated");
    let full = noise_wav(&dir, "full.wav", 10.0);
    let bytes = std::fs::read(&full).unwrap();
    let path = dir.join("truncated.wav");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert_fails(&path, "truncated");
}

#[test]
fn nan_sample() {
    let dir = temp_dir("nan");
    let path = dir.join("nan.wav");
    let mut samples = vec![0.1f32; 22_050 * 5];
    samples[22_050 * 2] = f32::NAN;
    write_wav_f32(&path, 22_050, 1, &samples);
    assert_fails(&path, "non-finite sample (NaN or infinity) at 2.000 s");
    samples[22_050 * 2] = f32::INFINITY;
    write_wav_f32(&path, 22_050, 1, &samples);
    assert_fails(&path, "non-finite sample");
}

#[test]
fn short_clip_is_padded_to_one_window() {
    let dir = temp_dir("short");
    let path = noise_wav(&dir, "short.wav", 1.0);
    let (code, stdout, stderr) = replay(&[&path]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("over 1 window(s) (padded"), "{stdout}");
}

/// `short_input = "loop"` in the manifest: a short recording's window is
/// exactly the window of the same audio repeated (replay and features
/// alike), and a long recording's windows do not change.
#[test]
fn short_clip_is_looped_when_the_manifest_says_so() {
    let dir = temp_dir("short-loop");
    std::fs::copy(repo("models/tiny/tiny.onnx"), dir.join("tiny.onnx")).unwrap();
    let manifest = std::fs::read_to_string(repo("models/tiny/tiny.toml")).unwrap();
    let looped = dir.join("loop.toml");
    std::fs::write(
        &looped,
        manifest.replace("top_db = 80.0", "top_db = 80.0\nshort_input = \"loop\""),
    )
    .unwrap();
    let mut rng = Rng(11);
    let once: Vec<i16> = (0..22_050 * 3 / 4)
        .map(|_| (rng.signed() * 8000.0) as i16)
        .collect();
    let short = dir.join("short.wav");
    write_wav_i16(&short, 22_050, 1, &once);
    let repeated = dir.join("repeated.wav");
    write_wav_i16(&repeated, 22_050, 1, &once.repeat(5));
    let long = noise_wav(&dir, "long.wav", 8.0);
    let first_window = |model: &Path, clip: &Path| -> (String, String) {
        let out = genrepi(&[
            "--model".as_ref(),
            model.as_os_str(),
            "replay".as_ref(),
            "--json".as_ref(),
            clip.as_os_str(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let first: serde_json::Value =
            serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
        (first["probs"].to_string(), stdout)
    };
    let (short_probs, _) = first_window(&looped, &short);
    let (repeated_probs, _) = first_window(&looped, &repeated);
    assert_eq!(short_probs, repeated_probs);
    let (padded_probs, _) = first_window(&repo("models/tiny/tiny.toml"), &short);
    assert_ne!(
        short_probs, padded_probs,
        "looping must change a short window"
    );
    let (_, long_looped) = first_window(&looped, &long);
    let (_, long_padded) = first_window(&repo("models/tiny/tiny.toml"), &long);
    assert_eq!(
        long_looped, long_padded,
        "a long clip's windows never change"
    );
    let out = genrepi(&[
        "--model".as_ref(),
        looped.as_os_str(),
        "replay".as_ref(),
        short.as_os_str(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("(looped: shorter than a window)"));
}

#[test]
fn batch_continues_past_bad_files() {
    let dir = temp_dir("batch");
    let good1 = noise_wav(&dir, "good1.wav", 4.0);
    let bad = dir.join("bad.wav");
    std::fs::write(&bad, b"RIFF....WAVE").unwrap();
    let good2 = noise_wav(&dir, "good2.wav", 4.0);
    let (code, stdout, stderr) = replay(&[&good1, &bad, &good2]);
    assert_eq!(code, 1, "some files failed: {stderr}");
    assert!(stdout.contains("good1.wav: "), "{stdout}");
    assert!(stdout.contains("good2.wav: "), "{stdout}");
    assert_eq!(
        stderr.lines().filter(|l| l.contains("bad.wav")).count(),
        1,
        "{stderr}"
    );
}

/// Copies the tiny model and a manifest edited by `edit` into a temp dir.
fn broken_model(test: &str, edit: impl Fn(String) -> String) -> PathBuf {
    common::edited_tiny_model(test, edit)
}

fn assert_model_fails(manifest: &Path, names: &Path, cause: &str) {
    let out = genrepi(&["--model".as_ref(), manifest.as_os_str(), "info".as_ref()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(message_lines(&stderr).len(), 1, "one line: {stderr}");
    assert!(
        stderr.contains(&names.display().to_string()),
        "names {}: {stderr}",
        names.display()
    );
    assert!(stderr.contains(cause), "says {cause:?}: {stderr}");
}

#[test]
fn model_checksum_mismatch() {
    let m = broken_model("sha", |s| {
        let line = s
            .lines()
            .find(|l| l.starts_with("sha256"))
            .unwrap()
            .to_string();
        s.replace(&line, &format!("sha256 = \"{}\"", "0".repeat(64)))
    });
    assert_model_fails(&m, &m.with_file_name("tiny.onnx"), "checksum mismatch");
}

#[test]
fn model_label_count_mismatch() {
    let m = broken_model("labels", |s| s.replace("\"rock\"]", "\"rock\", \"polka\"]"));
    assert_model_fails(&m, &m.with_file_name("tiny.onnx"), "11 labels");
}

#[test]
fn model_shape_mismatch() {
    let m = broken_model("shape", |s| {
        s.replace("shape = [1, 1, 128, 130]", "shape = [1, 3, 128, 130]")
    });
    assert_model_fails(
        &m,
        &m.with_file_name("tiny.onnx"),
        "manifest says [1, 3, 128, 130]",
    );
}

#[test]
fn model_manifest_invalid() {
    let m = broken_model("manifest", |s| s.replace("labels =", "lables ="));
    assert_model_fails(&m, &m, "invalid model manifest");
}

#[test]
fn model_missing() {
    let dir = temp_dir("model-missing");
    let m = dir.join("nothing.toml");
    assert_model_fails(&m, &m, "not found");
}
