//! Any bytes as what a status-page client sends: the request handler
//! answers or waits for more, never panics, and every answer is one
//! complete HTTP/1.1 response.
#![no_main]

use std::sync::{Arc, Mutex};

use genrepi::http::{Board, Status, respond};
use genrepi::scheduler::Counters;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let board = Board {
        status: Arc::new(Mutex::new(Status::default())),
        counters: Arc::new(Counters::default()),
        started: std::time::Instant::now(),
    };
    if let Some(response) = respond(&board, data) {
        assert!(response.starts_with(b"HTTP/1.1 "));
    } else {
        assert!(data.len() < genrepi::http::MAX_REQUEST_BYTES);
    }
});
