//! The ALSA harness of `tests/listen.rs`: real capture through ALSA's
//! `file` PCM reading a FIFO ([`AlsaFifo`]), a writer thread that feeds it
//! on a clock ([`Writer`], steps of [`Step`]), a running `listen` whose
//! stdout lines arrive on a channel ([`Listener`]), and music-like test
//! audio ([`signal`]). See ../shared/NOTES.md for why it is built this way.
#![allow(dead_code)]

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{Rng, genrepi, repo};

pub const RATE: usize = 48_000;
/// `O_NONBLOCK` on Linux (x86-64 and aarch64).
pub const O_NONBLOCK: i32 = 0o4000;
pub const CHANNELS: usize = 2;

/// A FIFO behind an ALSA `file` PCM named `default`.
pub struct AlsaFifo {
    pub fifo: PathBuf,
    pub conf: PathBuf,
}

impl AlsaFifo {
    pub fn new(dir: &Path) -> AlsaFifo {
        let fifo = dir.join("capture.fifo");
        let status = Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(status.success(), "mkfifo {}", fifo.display());
        Self::with_infile(dir, fifo)
    }

    /// A `default` PCM reading `infile` (a FIFO, or /dev/zero for tests
    /// that never need audio: opening a FIFO waits for a writer).
    pub fn with_infile(dir: &Path, fifo: PathBuf) -> AlsaFifo {
        let conf = dir.join("asound.conf");
        std::fs::write(
            &conf,
            format!(
                "pcm.!default {{ type file; slave.pcm \"null\"; file \"/dev/null\"; \
                 infile \"{}\"; format \"raw\" }}\n",
                fifo.display()
            ),
        )
        .unwrap();
        AlsaFifo { fifo, conf }
    }

    /// `genrepi listen` capturing 48 kHz stereo i16 from the FIFO.
    pub fn listen(&self, model: Option<&Path>, extra: &[&str]) -> Listener {
        let mut cmd = genrepi();
        if let Some(m) = model {
            cmd.arg("--model").arg(m);
        }
        cmd.env(
            "ALSA_CONFIG_PATH",
            format!("/usr/share/alsa/alsa.conf:{}", self.conf.display()),
        )
        .current_dir(repo(""))
        .args([
            "-v",
            "listen",
            "--json",
            "--rate",
            "48000",
            "--channels",
            "2",
        ])
        .args(["--format", "i16"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        Listener::spawn(cmd)
    }
}

/// What the writer does, in order; after the last step it writes silence
/// until stopped.
pub enum Step {
    /// Write these interleaved samples at real time.
    Audio(Vec<i16>),
    /// Close the FIFO (the device disappears), wait, and reopen it.
    Unplug(Duration),
}

pub struct Writer {
    pub stop: Arc<AtomicBool>,
    pub handle: Option<JoinHandle<()>>,
}

impl Writer {
    pub fn start(fifo: &Path, steps: Vec<Step>) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let fifo = fifo.to_path_buf();
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            // Read-write, so the open does not wait for a reader and the
            // reader's closing does not end the writer; non-blocking, so a
            // full pipe (the reader has exited) cannot hang the test.
            let open = || {
                use std::os::unix::fs::OpenOptionsExt;
                File::options()
                    .read(true)
                    .write(true)
                    .custom_flags(O_NONBLOCK)
                    .open(&fifo)
                    .expect("open the FIFO")
            };
            let mut file = open();
            let chunk = RATE / 100 * CHANNELS;
            let mut clock = Instant::now();
            let mut written = 0u64;
            let write = |file: &mut File, data: &[i16], clock: Instant, written: &mut u64| {
                let bytes: Vec<u8> = data.iter().flat_map(|s| s.to_le_bytes()).collect();
                let mut rest = &bytes[..];
                while !rest.is_empty() {
                    match file.write(rest) {
                        Ok(n) => rest = &rest[n..],
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            if flag.load(Ordering::Relaxed) {
                                return false;
                            }
                            std::thread::sleep(Duration::from_millis(2));
                        }
                        Err(_) => return false,
                    }
                }
                *written += (data.len() / CHANNELS) as u64;
                let due = clock + Duration::from_secs_f64(*written as f64 / RATE as f64);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                true
            };
            for step in steps {
                match step {
                    Step::Audio(samples) => {
                        for piece in samples.chunks(chunk) {
                            if flag.load(Ordering::Relaxed)
                                || !write(&mut file, piece, clock, &mut written)
                            {
                                return;
                            }
                        }
                    }
                    Step::Unplug(gap) => {
                        drop(std::mem::replace(&mut file, tempfile_placeholder()));
                        let until = Instant::now() + gap;
                        while Instant::now() < until {
                            if flag.load(Ordering::Relaxed) {
                                return;
                            }
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        file = open();
                        clock = Instant::now();
                        written = 0;
                    }
                }
            }
            let silence = vec![0i16; chunk];
            while !flag.load(Ordering::Relaxed) && write(&mut file, &silence, clock, &mut written) {
            }
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }
}

/// Something to hold in place of the FIFO while it is closed.
pub fn tempfile_placeholder() -> File {
    File::open("/dev/null").unwrap()
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A running `listen`, its stdout lines arriving on a channel.
pub struct Listener {
    pub child: Child,
    pub lines: mpsc::Receiver<String>,
    pub stderr: Arc<Mutex<String>>,
}

impl Listener {
    pub fn spawn(mut cmd: Command) -> Listener {
        let mut child = cmd.spawn().expect("genrepi starts");
        let (tx, lines) = mpsc::channel();
        let out = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().unwrap();
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let mut s = sink.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
            }
        });
        Listener {
            child,
            lines,
            stderr,
        }
    }

    /// The next verdict, as JSON, within `timeout`.
    pub fn next(&mut self, timeout: Duration) -> Value {
        match self.lines.recv_timeout(timeout) {
            Ok(line) => serde_json::from_str(&line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}")),
            Err(_) => {
                let _ = self.child.kill();
                panic!(
                    "no verdict within {timeout:?}; stderr:\n{}",
                    self.stderr.lock().unwrap()
                );
            }
        }
    }

    /// Verdicts until `until` returns true for one (inclusive).
    pub fn until(&mut self, timeout: Duration, until: impl Fn(&Value) -> bool) -> Vec<Value> {
        let end = Instant::now() + timeout;
        let mut got = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            let v = self.next(left.max(Duration::from_millis(1)));
            let done = until(&v);
            got.push(v);
            if done {
                return got;
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn rss_kb(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// Sends a signal (`-TERM`, `-INT`, `-HUP`) with kill(1).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(ok.success(), "kill {sig}");
    }

    /// Waits for the process to exit, killing it after 10 s.
    pub fn wait_exit(&mut self, since: Instant) -> std::process::ExitStatus {
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            if since.elapsed() > Duration::from_secs(10) {
                let _ = self.child.kill();
                panic!("listen still running 10 s after the signal");
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends SIGTERM; returns the exit time, the status and the remaining
    /// stdout lines.
    pub fn terminate(mut self) -> (Duration, std::process::ExitStatus, Vec<String>, String) {
        let sent = Instant::now();
        self.signal("-TERM");
        let status = self.wait_exit(sent);
        let took = sent.elapsed();
        // The reader threads see end-of-file once the process has gone.
        let rest: Vec<String> = self.lines.iter().collect();
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().unwrap().clone();
        (took, status, rest, stderr)
    }
}

/// Deterministic music-like test audio: a melody of harmonic tones with
/// a noisy beat, different in each second, 48 kHz stereo i16.
pub fn signal(seconds: f64, seed: u64) -> Vec<i16> {
    let mut rng = Rng(seed);
    let frames = (seconds * RATE as f64) as usize;
    let mut out = Vec::with_capacity(frames * CHANNELS);
    let mut f0 = 220.0f64;
    for i in 0..frames {
        let t = i as f64 / RATE as f64;
        if i % (RATE / 4) == 0 {
            f0 = 110.0 * 2f64.powf(rng.range(0, 36) as f64 / 12.0);
        }
        let tone: f64 = (1..5)
            .map(|h| (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin() / h as f64)
            .sum();
        let beat = if (t * 4.0).fract() < 0.05 {
            rng.signed() as f64
        } else {
            0.0
        };
        let l = 0.25 * tone + 0.3 * beat;
        let r = 0.2 * tone - 0.3 * beat;
        out.push((l.clamp(-1.0, 1.0) * 32767.0) as i16);
        out.push((r.clamp(-1.0, 1.0) * 32767.0) as i16);
    }
    out
}

pub fn probs(v: &Value) -> Vec<f64> {
    v["probs"]
        .as_object()
        .unwrap_or_else(|| panic!("no probs in {v}"))
        .values()
        .map(|p| p.as_f64().unwrap())
        .collect()
}
