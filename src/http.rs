//! The optional status server for kiosks: a self-refreshing HTML page,
//! `/api/status` (JSON) and `/metrics` (Prometheus text format).
//!
//! Owns rendering the [`Status`] that the listener keeps up to date, and one
//! server thread that polls every connection (mio, httparse): at most
//! [`MAX_CONNECTIONS`] clients, [`CLIENT_TIME`] each, one response per
//! connection, so neither idle nor pipelining clients can hold up the others.
//! The page is rendered on the server and refreshes itself with a
//! `<meta http-equiv="refresh">`, so it needs no JavaScript.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::scheduler::{Counters, Verdict};

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

impl Status {
    /// Takes in one verdict of the live pipeline (`labels` in the model's
    /// order; `hop_s` the hop in force).
    pub fn record(&mut self, v: &Verdict<'_>, labels: &[String], hop_s: f64) {
        self.level_db = v.level_db;
        self.latency_ms = v.latency.as_secs_f64() * 1e3;
        self.updated = humantime::format_rfc3339_millis(v.ts).to_string();
        self.hop_s = hop_s;
        match &v.result {
            None => {
                self.genre = Some("silence".into());
                self.probability = 0.0;
                self.probs.clear();
            }
            Some(c) => {
                self.genre = Some(labels[c.smoothed].clone());
                self.probability = c.smoothed_p;
                self.inference_ms = c.inference.as_secs_f64() * 1e3;
                self.probs = labels
                    .iter()
                    .cloned()
                    .zip(c.probs.iter().copied())
                    .collect();
            }
        }
    }
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
    ///
    /// Long (about 90 lines) because it is one flat list of metric families,
    /// each with its HELP and TYPE lines, in the order a scraper shows them;
    /// split up, the exposition would no longer read top to bottom.
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

/// Connections served at once; a new one evicts the oldest.
pub const MAX_CONNECTIONS: usize = 32;
/// Time a client has from connecting to having read its response.
pub const CLIENT_TIME: Duration = Duration::from_secs(5);
/// Largest request head accepted.
pub const MAX_REQUEST_BYTES: usize = 8 << 10;
/// How often the server thread looks at its stop flag and deadlines.
const TICK: Duration = Duration::from_millis(100);

/// The complete response to a request that starts `request`, or `None`
/// while the head is incomplete (and under [`MAX_REQUEST_BYTES`]).
///
/// One response per connection (`Connection: close`): anything after the
/// first request's head is ignored, so pipelining cannot queue work. GET
/// and HEAD answer; other methods get 405, a malformed head 400, an
/// oversized one 431.
pub fn respond(board: &Board, request: &[u8]) -> Option<Vec<u8>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let parsed = req.parse(request);
    let (code, content_type, body, head_only) = match parsed {
        Ok(httparse::Status::Partial) if request.len() < MAX_REQUEST_BYTES => return None,
        Ok(httparse::Status::Partial) | Err(httparse::Error::TooManyHeaders) => (
            431,
            "text/plain",
            "request header too large\n".to_string(),
            false,
        ),
        Err(_) => (400, "text/plain", "bad request\n".to_string(), false),
        Ok(httparse::Status::Complete(_)) => {
            let method = req.method.unwrap_or("");
            let path = req.path.unwrap_or("").split('?').next().unwrap_or("");
            let head_only = method == "HEAD";
            if method != "GET" && !head_only {
                (405, "text/plain", "method not allowed\n".to_string(), false)
            } else {
                let (body, content_type, code) = match path {
                    "/" | "/index.html" => (board.html(), "text/html; charset=utf-8", 200),
                    "/api/status" => (board.json().to_string(), "application/json", 200),
                    "/metrics" => (board.metrics(), "text/plain; version=0.0.4", 200),
                    _ => ("not found\n".to_string(), "text/plain", 404),
                };
                (code, content_type, body, head_only)
            }
        }
    };
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let allow = if code == 405 {
        "Allow: GET, HEAD\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Cache-Control: no-store\r\n{allow}Connection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    if !head_only {
        out.extend_from_slice(body.as_bytes());
    }
    Some(out)
}

/// One client of the server thread.
struct Connection {
    stream: mio::net::TcpStream,
    accepted: Instant,
    request: Vec<u8>,
    response: Option<Vec<u8>>,
    written: usize,
}

impl Connection {
    /// Reads what has arrived and writes what it can; `true` when the
    /// connection is done (answered, closed by the client, or failed).
    fn advance(&mut self, board: &Board) -> bool {
        use std::io::{ErrorKind, Read, Write};
        let mut chunk = [0u8; 2048];
        while self.response.is_none() {
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(n) => {
                    let room = MAX_REQUEST_BYTES - self.request.len();
                    self.request.extend_from_slice(&chunk[..n.min(room)]);
                    self.response = respond(board, &self.request);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let response = self.response.as_deref().unwrap_or_default();
        while self.written < response.len() {
            match self.stream.write(&response[self.written..]) {
                Ok(0) => return true,
                Ok(n) => self.written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        true
    }
}

/// A running status server: one thread polling every connection (mio), so
/// no client can hold the others up and the thread count never grows.
/// At most [`MAX_CONNECTIONS`] clients, [`CLIENT_TIME`] each.
pub struct StatusServer {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// The address it listens on.
    pub addr: String,
}

const LISTENER: mio::Token = mio::Token(usize::MAX);

impl StatusServer {
    /// Binds `addr` (`PORT`, `HOST:PORT`; a bare port binds 127.0.0.1) and
    /// serves `board` from a thread.
    pub fn start(addr: &str, board: Board) -> Result<StatusServer> {
        let addr = if addr.contains(':') {
            addr.to_string()
        } else {
            format!("127.0.0.1:{addr}")
        };
        let fail = |detail: String| Error::StatusServer {
            addr: addr.clone(),
            detail,
        };
        let socket: std::net::SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(&addr)
            .map_err(|e| fail(format!("not an address: {e}")))?
            .next()
            .ok_or_else(|| fail("not an address".into()))?;
        let mut listener =
            mio::net::TcpListener::bind(socket).map_err(|e| fail(format!("cannot listen: {e}")))?;
        let bound = listener
            .local_addr()
            .map(|a| a.to_string())
            .unwrap_or(addr.clone());
        let poll = mio::Poll::new().map_err(|e| fail(format!("cannot poll: {e}")))?;
        poll.registry()
            .register(&mut listener, LISTENER, mio::Interest::READABLE)
            .map_err(|e| fail(format!("cannot poll: {e}")))?;
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("http".into())
                .spawn(move || {
                    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        serve(poll, listener, &board, &stop)
                    }));
                    match result {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => log::error!("status server stopped: {e}"),
                        Err(_) => log::error!("status server stopped: it panicked"),
                    }
                })
                .map_err(|cause| Error::Spawn {
                    what: "http",
                    cause,
                })?
        };
        Ok(StatusServer {
            stop,
            handle: Some(handle),
            addr: bound,
        })
    }

    /// Whether the server thread has ended (it only does when stopped or
    /// after a fatal error).
    pub fn finished(&self) -> bool {
        self.handle.as_ref().is_none_or(|h| h.is_finished())
    }

    /// Stops serving and joins the thread (within `TICK`).
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The server thread's loop, until `stop` is raised or polling fails.
fn serve(
    mut poll: mio::Poll,
    listener: mio::net::TcpListener,
    board: &Board,
    stop: &AtomicBool,
) -> std::io::Result<()> {
    let mut events = mio::Events::with_capacity(64);
    let mut clients: std::collections::HashMap<usize, Connection> =
        std::collections::HashMap::new();
    let mut next_token = 0usize;
    while !stop.load(Ordering::Relaxed) {
        if let Err(e) = poll.poll(&mut events, Some(TICK)) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in events.iter() {
            if event.token() == LISTENER {
                accept_all(&poll, &listener, &mut clients, &mut next_token);
                continue;
            }
            let id = event.token().0;
            let done = clients.get_mut(&id).is_none_or(|c| c.advance(board));
            if let Some(mut c) = done.then(|| clients.remove(&id)).flatten() {
                let _ = poll.registry().deregister(&mut c.stream);
            }
        }
        // Clients past their time are dropped, whatever they are doing.
        let now = Instant::now();
        clients.retain(|_, c| now.duration_since(c.accepted) < CLIENT_TIME);
    }
    Ok(())
}

/// Accepts every waiting connection, evicting the oldest client when
/// [`MAX_CONNECTIONS`] are open (or when the process is out of descriptors).
fn accept_all(
    poll: &mio::Poll,
    listener: &mio::net::TcpListener,
    clients: &mut std::collections::HashMap<usize, Connection>,
    next_token: &mut usize,
) {
    let evict_oldest = |clients: &mut std::collections::HashMap<usize, Connection>| {
        let oldest = clients
            .iter()
            .min_by_key(|(_, c)| c.accepted)
            .map(|(&k, _)| k);
        oldest.and_then(|k| clients.remove(&k)).is_some()
    };
    loop {
        match listener.accept() {
            Ok((mut stream, _)) => {
                if clients.len() >= MAX_CONNECTIONS {
                    evict_oldest(clients);
                }
                let id = *next_token;
                *next_token = (*next_token + 1) % (usize::MAX - 1);
                let interest = mio::Interest::READABLE | mio::Interest::WRITABLE;
                if poll
                    .registry()
                    .register(&mut stream, mio::Token(id), interest)
                    .is_ok()
                {
                    clients.insert(
                        id,
                        Connection {
                            stream,
                            accepted: Instant::now(),
                            request: Vec::new(),
                            response: None,
                            written: 0,
                        },
                    );
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                log::warn!("status server: cannot accept: {e}");
                // Out of descriptors: make room, or wait for the next event.
                if !evict_oldest(clients) {
                    return;
                }
            }
        }
    }
}
