//! Any text as a model manifest: parsed and validated, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(m) = genrepi::model::Manifest::parse(text) {
            // What a valid manifest promises the rest of the program.
            let f = &m.features;
            let _ = f.window_samples();
            let _ = f.hop_frames_for(3600.0);
            assert!(m.input.shape.iter().product::<usize>() <= 1 << 24);
        }
    }
});
