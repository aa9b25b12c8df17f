//! The optional status server for kiosks: a self-refreshing HTML page,
//! `/api/status` (JSON) and `/metrics` (Prometheus text format).
//!
//! Owns rendering the [`Status`] that the listener keeps up to date, and one
//! `tiny_http` thread that answers requests one at a time (a status page
//! has one or two readers; nothing queues beyond the socket's backlog).
//! The page is rendered on the server and refreshes itself with a
//! `<meta http-equiv="refresh">`, so it needs no JavaScript.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::live::Counters;

/// What the listener last knew, for the status page.
#[derive(Debug, Clone, Default)]
pub struct Status {
    /// Model name from its manifest.
    pub model: String,
    /// Device asked for.
    pub device: String,
    /// Capture state: opening, running, retrying, stopped.
    pub state: String,
    /// Reported genre (`silence` when quiet); `None` before the first window.
    pub genre: Option<String>,
    /// Its smoothed probability.
    pub probability: f32,
    /// Latest window's probabilities, label → p, in label order.
    pub probs: Vec<(String, f32)>,
    /// Latest window's level, dBFS.
    pub level_db: f32,
    /// Audio-to-verdict latency of the latest window, ms.
    pub latency_ms: f64,
    /// Model time of the latest classified window, ms.
    pub inference_ms: f64,
    /// Current hop, s.
    pub hop_s: f64,
    /// Wall-clock time of the latest verdict (RFC 3339).
    pub updated: String,
}

/// Everything a response needs.
#[derive(Clone)]
pub struct Board {
    /// The latest status.
    pub status: Arc<Mutex<Status>>,
    /// The pipeline's counters.
    pub counters: Arc<Counters>,
    /// When the process started.
    pub started: Instant,
}

impl Board {
    fn snapshot(&self) -> Status {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// `/api/status` body.
    pub fn json(&self) -> Value {
        let s = self.snapshot();
        let c = &self.counters;
        let probs: Map<String, Value> =
            s.probs.iter().map(|(l, p)| (l.clone(), json!(p))).collect();
        json!({
            "model": s.model,
            "device": s.device,
            "state": s.state,
            "uptime_s": round1(self.started.elapsed().as_secs_f64()),
            "genre": s.genre,
            "probability": s.probability,
            "probs": probs,
            "level_db": round1(s.level_db as f64),
            "latency_ms": round1(s.latency_ms),
            "inference_ms": round1(s.inference_ms),
            "hop_s": (s.hop_s * 1000.0).round() / 1000.0,
            "updated": s.updated,
            "windows": c.windows.load(Ordering::Relaxed),
            "verdicts": c.verdicts.load(Ordering::Relaxed),
            "dropped": c.dropped(),
            "overruns": c.overruns.load(Ordering::Relaxed),
            "reopens": c.reopens.load(Ordering::Relaxed),
            "errors": c.errors.load(Ordering::Relaxed),
        })
    }

    /// `/metrics` body (Prometheus text exposition format 0.0.4).
    pub fn metrics(&self) -> String {
        let s = self.snapshot();
        let c = &self.counters;
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP genrepi_{name} {help}");
            let _ = writeln!(out, "# TYPE genrepi_{name} {kind}");
            let _ = writeln!(out, "genrepi_{name} {value}");
        };
        let uptime = self.started.elapsed().as_secs_f64();
        metric(
            "uptime_seconds",
            "gauge",
            "Seconds since start.",
            format!("{uptime:.1}"),
        );
        let count = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed).to_string();
        metric(
            "windows_total",
            "counter",
            "Windows produced by the front-end.",
            count(&c.windows),
        );
        metric(
            "verdicts_total",
            "counter",
            "Windows classified or reported as silence.",
            count(&c.verdicts),
        );
        metric(
            "dropped_windows_total",
            "counter",
            "Windows dropped (queue full) or skipped (past deadline).",
            c.dropped().to_string(),
        );
        metric(
            "overruns_total",
            "counter",
            "Capture overruns (ring full or device xrun).",
            count(&c.overruns),
        );
        metric(
            "device_reopens_total",
            "counter",
            "Times the audio device was reopened after a failure.",
            count(&c.reopens),
        );
        metric(
            "inference_errors_total",
            "counter",
            "Windows the model failed on.",
            count(&c.errors),
        );
        metric(
            "latency_seconds",
            "gauge",
            "Audio-to-verdict latency of the latest window.",
            format!("{:.4}", s.latency_ms / 1000.0),
        );
        metric(
            "inference_seconds",
            "gauge",
            "Model time of the latest classified window.",
            format!("{:.4}", s.inference_ms / 1000.0),
        );
        metric(
            "level_dbfs",
            "gauge",
            "RMS level of the latest window.",
            format!("{:.1}", s.level_db),
        );
        metric(
            "hop_seconds",
            "gauge",
            "Current window hop.",
            format!("{:.4}", s.hop_s),
        );
        let _ = writeln!(
            out,
            "# HELP genrepi_probability Latest window's probability per genre."
        );
        let _ = writeln!(out, "# TYPE genrepi_probability gauge");
        for (label, p) in &s.probs {
            let _ = writeln!(
                out,
                "genrepi_probability{{genre=\"{}\"}} {p}",
                escape_label(label)
            );
        }
        out
    }

    /// The status page.
    pub fn html(&self) -> String {
        let s = self.snapshot();
        let c = &self.counters;
        let genre = s.genre.as_deref().unwrap_or("waiting for audio");
        let mut bars = String::new();
        for (label, p) in &s.probs {
            let _ = writeln!(
                bars,
                "<div class=\"row\"><span class=\"label\">{l}</span>\
                 <span class=\"bar\"><span class=\"fill\" data-genre=\"{l}\" style=\"width:{w:.1}%\"></span></span>\
                 <span class=\"p\">{p:.2}</span></div>",
                l = escape_html(label),
                w = (p * 100.0).clamp(0.0, 100.0),
            );
        }
        let uptime = format_uptime(self.started.elapsed());
        format!(
            r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="refresh" content="1">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>genrepi: {genre}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; background: #111; color: #eee; }}
h1 {{ font-size: 3em; margin: 0 0 .2em 0; }}
.row {{ display: flex; align-items: center; margin: .2em 0; }}
.label {{ width: 7em; }}
.bar {{ flex: 1; background: #333; height: 1em; margin: 0 .5em; }}
.fill {{ display: block; height: 100%; background: #4a9; }}
.p {{ width: 3em; text-align: right; }}
table {{ margin-top: 1.5em; color: #aaa; }}
td {{ padding-right: 1.5em; }}
</style></head>
<body>
<h1 id="genre">{genre}</h1>
<p id="probability">{prob}</p>
<div id="bars">
{bars}</div>
<table>
<tr><td>uptime</td><td id="uptime">{uptime}</td></tr>
<tr><td>device</td><td id="device">{device} ({state})</td></tr>
<tr><td>model</td><td>{model}</td></tr>
<tr><td>windows</td><td id="windows">{windows}</td></tr>
<tr><td>dropped</td><td id="dropped">{dropped}</td></tr>
<tr><td>overruns</td><td id="overruns">{overruns}</td></tr>
<tr><td>device reopens</td><td id="reopens">{reopens}</td></tr>
<tr><td>latency</td><td>{latency:.0} ms (model {inference:.0} ms)</td></tr>
<tr><td>level</td><td>{level:.1} dBFS</td></tr>
</table>
</body></html>
"#,
            genre = escape_html(genre),
            prob = if s.genre.is_some() {
                format!("smoothed probability {:.2}", s.probability)
            } else {
                String::new()
            },
            device = escape_html(&s.device),
            state = escape_html(&s.state),
            model = escape_html(&s.model),
            windows = c.windows.load(Ordering::Relaxed),
            dropped = c.dropped(),
            overruns = c.overruns.load(Ordering::Relaxed),
            reopens = c.reopens.load(Ordering::Relaxed),
            latency = s.latency_ms,
            inference = s.inference_ms,
            level = s.level_db,
        )
    }
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn format_uptime(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{}d {:02}:{:02}:{:02}",
        s / 86400,
        s / 3600 % 24,
        s / 60 % 60,
        s % 60
    )
}

fn escape_html(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn escape_label(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A running status server.
pub struct StatusServer {
    server: Arc<tiny_http::Server>,
    handle: Option<JoinHandle<()>>,
    /// The address it listens on.
    pub addr: String,
}

impl StatusServer {
    /// Binds `addr` (`PORT`, `HOST:PORT`; a bare port binds 127.0.0.1) and
    /// serves `board` from a thread.
    pub fn start(addr: &str, board: Board) -> Result<StatusServer> {
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("127.0.0.1:{addr}")
        };
        let server = Arc::new(
            tiny_http::Server::http(&addr)
                .map_err(|e| Error::Config(format!("--http {addr}: cannot listen: {e}")))?,
        );
        let bound = server
            .server_addr()
            .to_ip()
            .map(|a| a.to_string())
            .unwrap_or(addr);
        let handle = {
            let server = server.clone();
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || {
                    for request in server.incoming_requests() {
                        let path = request.url().split('?').next().unwrap_or("").to_string();
                        let (body, content_type, code) = match path.as_str() {
                            "/" | "/index.html" => (board.html(), "text/html; charset=utf-8", 200),
                            "/api/status" => (board.json().to_string(), "application/json", 200),
                            "/metrics" => (board.metrics(), "text/plain; version=0.0.4", 200),
                            _ => ("not found\n".to_string(), "text/plain", 404),
                        };
                        let header = tiny_http::Header::from_bytes("Content-Type", content_type)
                            .expect("static header is valid");
                        let response = tiny_http::Response::from_string(body)
                            .with_status_code(code)
                            .with_header(header);
                        if let Err(e) = request.respond(response) {
                            log::debug!("http: {e}");
                        }
                    }
                })
                .map_err(|e| Error::Config(format!("cannot start http thread: {e}")))?
        };
        Ok(StatusServer {
            server,
            handle: Some(handle),
            addr: bound,
        })
    }

    /// Stops serving and joins the thread.
    pub fn stop(mut self) {
        self.server.unblock();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
