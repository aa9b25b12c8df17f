//! Any bytes as an audio file of any container (the first byte picks the
//! extension hint and the short-input policy), through the whole front-end: decode, checks, downmix,
//! resampling, log-mel windows. A small front-end (8 kHz, 256-point FFT)
//! runs the same code at a fraction of the cost.
//!
//! Panics raised inside dependencies (decoders, resampler) are contained
//! per file the way `replay`/`eval`/`features` contain them; a panic in
//! genrepi's own code is a crash.
#![no_main]

use genrepi::audio::FileSource;
use genrepi::features::{FeatureConfig, ShortInput};
use genrepi::frontend::Frontend;
use libfuzzer_sys::fuzz_target;

const EXTENSIONS: [Option<&str>; 7] = [
    None,
    Some("wav"),
    Some("flac"),
    Some("mp3"),
    Some("ogg"),
    Some("aiff"),
    Some("mkv"),
];

fuzz_target!(|data: &[u8]| {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(genrepi::error::install_panic_hook);
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let ext = EXTENSIONS[pick as usize % EXTENSIONS.len()];
    let cfg = FeatureConfig {
        sample_rate: 8_000,
        n_fft: 256,
        hop_length: 128,
        n_mels: 16,
        fmin: 0.0,
        fmax: 4_000.0,
        frames: 8,
        top_db: 80.0,
        short_input: if pick & 0x80 != 0 {
            ShortInput::Loop
        } else {
            ShortInput::Pad
        },
    };
    let result = genrepi::error::contain("fuzz input", || {
        let mut source = FileSource::from_bytes("fuzz input", bytes.to_vec(), ext)?;
        let mut frontend = Frontend::new(&cfg, 4)?;
        let mut windows = 0usize;
        frontend.run(&mut source, &mut |w| {
            assert!(w.values.iter().all(|v| v.is_finite()), "non-finite window");
            windows += 1;
            Ok(())
        })?;
        Ok(windows)
    });
    if let Err(genrepi::Error::Panic { detail, .. }) = result {
        if !detail.contains(".cargo/registry") {
            panic!("panic in genrepi's own code: {detail}");
        }
    }
});
