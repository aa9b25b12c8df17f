//! Any text as a `listen` config file: parsed and resolved (every range
//! checked), never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(mut cfg) = genrepi::config::ListenConfig::parse(text) {
            // Resolve against the tiny model, so that no file is needed.
            cfg.model =
                Some(concat!(env!("CARGO_MANIFEST_DIR"), "/../models/tiny/tiny.toml").into());
            if let Ok(r) = genrepi::config::resolve(&cfg) {
                assert!(r.live.queue >= 1 && r.live.queue <= 1024);
            }
        }
    }
});
