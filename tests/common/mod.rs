//! Helpers shared by the integration tests: running the binary
//! ([`genrepi`], [`run_genrepi`], [`run_within`]), test audio and models,
//! and the ALSA capture harness ([`alsa`]).
#![allow(dead_code)]

pub mod alsa;

use std::path::{Path, PathBuf};

/// A path inside the crate.
pub fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// `../shared/gtzan-mini`, or `None` (with a note) when it is absent.
pub fn gtzan_mini() -> Option<PathBuf> {
    let dir = repo("../shared/gtzan-mini");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!(
            "SKIPPED: {} is absent (real GTZAN clips live outside the repo)",
            dir.display()
        );
        None
    }
}

/// Deterministic pseudo-random numbers (xorshift64*), for chunk sizes and noise.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    /// Uniform in `[-1, 1)`.
    pub fn signed(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Writes a 16-bit PCM WAV file.
pub fn write_wav_i16(path: &Path, rate: u32, channels: u16, samples: &[i16]) {
    let data_len = (samples.len() * 2) as u32;
    let mut b = Vec::with_capacity(44 + data_len as usize);
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&1u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.wrapping_mul(channels as u32 * 2).to_le_bytes());
    b.extend_from_slice(&(channels * 2).to_le_bytes());
    b.extend_from_slice(&16u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// Writes a 32-bit float WAV file (format 3).
pub fn write_wav_f32(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let data_len = (samples.len() * 4) as u32;
    let mut b = Vec::new();
    b.extend_from_slice(b"RIFF");
    b.extend_from_slice(&(36 + data_len).to_le_bytes());
    b.extend_from_slice(b"WAVEfmt ");
    b.extend_from_slice(&16u32.to_le_bytes());
    b.extend_from_slice(&3u16.to_le_bytes());
    b.extend_from_slice(&channels.to_le_bytes());
    b.extend_from_slice(&rate.to_le_bytes());
    b.extend_from_slice(&rate.wrapping_mul(channels as u32 * 4).to_le_bytes());
    b.extend_from_slice(&(channels * 4).to_le_bytes());
    b.extend_from_slice(&32u16.to_le_bytes());
    b.extend_from_slice(b"data");
    b.extend_from_slice(&data_len.to_le_bytes());
    for s in samples {
        b.extend_from_slice(&s.to_le_bytes());
    }
    std::fs::write(path, b).unwrap();
}

/// The tiny model copied into a fresh folder with its manifest edited by
/// `edit`; returns the manifest.
pub fn edited_tiny_model(test: &str, edit: impl Fn(String) -> String) -> PathBuf {
    let dir = temp_dir(test);
    std::fs::copy(repo("models/tiny/tiny.onnx"), dir.join("tiny.onnx")).unwrap();
    let manifest = std::fs::read_to_string(repo("models/tiny/tiny.toml")).unwrap();
    let path = dir.join("tiny.toml");
    std::fs::write(&path, edit(manifest)).unwrap();
    path
}

/// A loopback port nothing listens on (yet).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Makes a FIFO at `path` (mkfifo(1)).
pub fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("mkfifo runs");
    assert!(ok.success(), "mkfifo {}", path.display());
}

/// A 16-bit mono 22050-Hz WAV of `seconds` of noise (seeded) at `dir/name`.
pub fn noise_wav(dir: &Path, name: &str, seconds: f32, seed: u64) -> PathBuf {
    let path = dir.join(name);
    let mut rng = Rng(seed);
    let n = (22_050.0 * seconds) as usize;
    let samples: Vec<i16> = (0..n).map(|_| (rng.signed() * 8000.0) as i16).collect();
    write_wav_i16(&path, 22_050, 1, &samples);
    path
}

/// A fresh, empty temporary folder for one test.
pub fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("genrepi-test-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Python for test-time references: the project's `.venv` (made by
/// `scripts/setup-debian.sh --dev`) when present, else `python3`.
pub fn python() -> PathBuf {
    let venv = repo(".venv/bin/python3");
    if venv.is_file() {
        venv
    } else {
        PathBuf::from("python3")
    }
}

/// Skips a test that needs Python packages, unless running in CI (`CI` set),
/// where their absence is a set-up bug and fails the test.
pub fn skip_without_python(what: &str) {
    skip_unless_available(what)
}

/// Skips a test whose tool `what` is missing here, unless running in CI
/// (`CI` set), where scripts/setup-debian.sh --dev installs it and its
/// absence fails the test.
pub fn skip_unless_available(what: &str) {
    assert!(
        std::env::var_os("CI").is_none(),
        "{what} is required in CI (scripts/setup-debian.sh --dev installs it)"
    );
    eprintln!("SKIPPED: {what} is not available");
}

/// The tiny test model's manifest: what the tests run unless they say
/// otherwise (the shipped default, a ResNet-152, takes seconds to load and
/// far longer under qemu).
pub fn tiny_model() -> PathBuf {
    repo("models/tiny/tiny.toml")
}

/// A command running the genrepi binary under test, with the tiny model as
/// its default (`GENREPI_MODEL`) and a clean environment for logging.
///
/// Cross-built aarch64 tests run under qemu-user without binfmt: the test
/// process can only start the aarch64 binary through `qemu-aarch64` (used
/// when the binary does not start natively).
pub fn genrepi() -> std::process::Command {
    use std::process::Command;
    let bin = env!("CARGO_BIN_EXE_genrepi");
    let needs_qemu = needs_qemu();
    let mut cmd = if needs_qemu {
        let mut c = Command::new("qemu-aarch64");
        c.arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.env("GENREPI_MODEL", tiny_model())
        .env_remove("RUST_LOG");
    cmd
}

/// Whether genrepi's binary only starts through `qemu-aarch64` here (a
/// cross-built test run without binfmt); genrepi's own children
/// (`bench`) then need `GENREPI_BENCH_WRAPPER=qemu-aarch64` too.
pub fn needs_qemu() -> bool {
    use std::process::Command;
    use std::sync::OnceLock;
    static NEEDS_QEMU: OnceLock<bool> = OnceLock::new();
    *NEEDS_QEMU.get_or_init(|| {
        // Under qemu-user a failed exec shows as an error or as exit 127.
        let native = Command::new(env!("CARGO_BIN_EXE_genrepi"))
            .arg("--version")
            .output();
        cfg!(target_arch = "aarch64")
            && !matches!(native, Ok(o) if o.status.success() && o.stdout.starts_with(b"genrepi"))
    })
}

/// The ten GTZAN genres, in label order.
#[allow(dead_code)]
pub const GTZAN_GENRES: [&str; 10] = [
    "blues",
    "classical",
    "country",
    "disco",
    "hiphop",
    "jazz",
    "metal",
    "pop",
    "reggae",
    "rock",
];

/// Runs `cmd` (stdin closed, output captured) to completion within `limit`
/// — a hang fails the test — and fails on a panic message. Returns the exit
/// code (-1 when killed by a signal), stdout and stderr.
#[allow(dead_code)]
pub fn run_within(
    mut cmd: std::process::Command,
    limit: std::time::Duration,
) -> (i32, String, String) {
    use std::process::Stdio;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_within(child, limit);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).to_string(),
        stderr,
    )
}

/// The binary under test ([`genrepi`]) with `args`, run to completion within
/// 60 s: exit code, stdout, stderr (see [`run_within`]).
#[allow(dead_code)]
pub fn run_genrepi<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> (i32, String, String) {
    let mut cmd = genrepi();
    cmd.args(args);
    run_within(cmd, std::time::Duration::from_secs(60))
}

/// stderr's lines, less tract's warning that qemu-user's /proc/cpuinfo has
/// no "Features" line (it appears only under emulation, never on a Pi).
#[allow(dead_code)]
pub fn message_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| !(l.contains("tract_linalg::arm64") && l.contains("/proc/cpuinfo")))
        .collect()
}

/// Waits for `child` at most `limit` (then kills it and fails the test: a
/// hang) and collects what it wrote to its piped outputs.
#[allow(dead_code)]
pub fn wait_within(
    mut child: std::process::Child,
    limit: std::time::Duration,
) -> std::process::Output {
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            panic!("still running after {limit:?}: a hang");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.wait_with_output().unwrap()
}
