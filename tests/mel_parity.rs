//! The mel front-end against librosa, and its streaming invariance.
//!
//! Reference windows come from `tests/fixtures/mel/make_mel_fixtures.py`
//! (librosa in float64); genrepi must agree within 0.01 dB everywhere.

mod common;

use std::path::Path;
use std::process::Command;

use genrepi::audio::{AudioSource, FileSource, MemorySource, StreamFormat};
use genrepi::features::{FeatureConfig, MelStream};
use genrepi::frontend::Frontend;
use ndarray::{Array1, Array3};
use ndarray_npy::NpzReader;

use common::{Rng, repo};

const TOLERANCE_DB: f32 = 0.01;
const HOP_FRAMES: usize = 10;

struct Reference {
    audio: Vec<f32>,
    first_frames: Vec<i64>,
    windows: Array3<f32>,
}

fn load(path: &Path) -> Reference {
    let mut npz = NpzReader::new(std::fs::File::open(path).unwrap()).unwrap();
    let audio: Array1<f32> = npz.by_name("audio").unwrap();
    let first_frames: Array1<i64> = npz.by_name("first_frames").unwrap();
    Reference {
        audio: audio.to_vec(),
        first_frames: first_frames.to_vec(),
        windows: npz.by_name("windows").unwrap(),
    }
}

/// Windows from feeding `audio` in chunks of the given sizes (cycled).
fn windows(audio: &[f32], chunks: &[usize]) -> Vec<(u64, Vec<f32>)> {
    let mut stream = MelStream::new(&FeatureConfig::default(), HOP_FRAMES).unwrap();
    let mut out = Vec::new();
    let mut rest = audio;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if chunks.is_empty() {
            rest.len()
        } else {
            chunks[i % chunks.len()].min(rest.len())
        };
        stream.push(&rest[..n], |w| out.push((w.first_frame, w.values.to_vec())));
        rest = &rest[n..];
        i += 1;
    }
    out
}

fn assert_matches(name: &str, reference: &Reference, got: &[(u64, Vec<f32>)]) {
    let firsts: Vec<i64> = got.iter().map(|(f, _)| *f as i64).collect();
    assert_eq!(firsts, reference.first_frames, "{name}: window starts");
    let mut worst = 0.0f32;
    for (k, (_, values)) in got.iter().enumerate() {
        let expected = reference.windows.index_axis(ndarray::Axis(0), k);
        assert_eq!(values.len(), expected.len());
        for (a, b) in values.iter().zip(expected.iter()) {
            worst = worst.max((a - b).abs());
        }
    }
    eprintln!(
        "{name}: {} windows, max |genrepi - librosa| = {worst:.5} dB",
        got.len()
    );
    assert!(
        worst <= TOLERANCE_DB,
        "{name}: differs from librosa by {worst} dB"
    );
}

#[test]
fn synthetic_signals_match_librosa() {
    for name in ["sine", "chirp", "noise", "quiet"] {
        let reference = load(&repo(&format!("tests/fixtures/mel/{name}.npz")));
        assert_matches(name, &reference, &windows(&reference.audio, &[]));
    }
}

#[test]
fn windows_are_gain_invariant() {
    let loud = windows(&load(&repo("tests/fixtures/mel/noise.npz")).audio, &[]);
    let quiet = windows(&load(&repo("tests/fixtures/mel/quiet.npz")).audio, &[]);
    let worst = loud
        .iter()
        .zip(&quiet)
        .flat_map(|((_, a), (_, b))| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
        .fold(0.0f32, f32::max);
    assert!(
        worst <= TOLERANCE_DB,
        "60 dB gain changed windows by {worst} dB"
    );
}

#[test]
fn chunking_does_not_change_windows() {
    let audio = load(&repo("tests/fixtures/mel/chirp.npz")).audio;
    let whole = windows(&audio, &[]);
    assert_eq!(whole.len(), 3);
    let mut rng = Rng(0x5eed);
    let random: Vec<usize> = (0..2000).map(|_| rng.range(1, 6000)).collect();
    for (label, chunks) in [
        ("1", vec![1]),
        ("511", vec![511]),
        ("4096", vec![4096]),
        ("random", random),
    ] {
        assert_eq!(windows(&audio, &chunks), whole, "chunks of {label}");
    }
}

/// The whole front-end (downmix, resampling, mel) gives identical windows
/// however a 44.1 kHz stereo stream is chunked.
#[test]
fn frontend_with_resampling_is_chunking_invariant() {
    let rate = 44_100;
    let mut rng = Rng(42);
    let frames = rate as usize * 5;
    let samples: Vec<f32> = (0..frames)
        .flat_map(|i| {
            let t = i as f32 / rate as f32;
            let tone = 0.4 * (2.0 * std::f32::consts::PI * 330.0 * t).sin();
            [tone + 0.05 * rng.signed(), -tone]
        })
        .collect();
    let format = StreamFormat {
        sample_rate: rate,
        channels: 2,
    };
    let run = |chunks: Vec<usize>| {
        let mut frontend = Frontend::new(&FeatureConfig::default(), 7).unwrap();
        let mut source = MemorySource::new("stereo", format, samples.clone(), chunks);
        let mut out = Vec::new();
        let stats = frontend
            .run(&mut source, &mut |w| {
                out.push(w.values.to_vec());
                Ok(())
            })
            .unwrap();
        assert_eq!(stats.windows, out.len());
        out
    };
    let whole = run(vec![]);
    assert_eq!(whole.len(), 12);
    let mut rng = Rng(7);
    let random: Vec<usize> = (0..5000).map(|_| rng.range(1, 3000)).collect();
    for chunks in [vec![1], vec![511], vec![4096], random] {
        assert!(run(chunks) == whole, "windows changed with chunking");
    }
}

/// A real GTZAN excerpt, decoded by genrepi (symphonia) and by librosa
/// (soundfile), gives the same samples and windows. The reference is made
/// at test time because GTZAN audio is never committed.
#[test]
fn real_clip_matches_librosa() {
    let Some(gtzan) = common::gtzan_mini() else {
        return;
    };
    let clip = gtzan.join("blues/blues.00000.wav");
    let out = common::temp_dir("real-clip").join("blues0.npz");
    let status = Command::new(common::python())
        .arg(repo("tests/fixtures/mel/make_mel_fixtures.py"))
        .args([
            "--clip".as_ref(),
            clip.as_os_str(),
            "--offset-s".as_ref(),
            "10".as_ref(),
        ])
        .args(["--out".as_ref(), out.as_os_str()])
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        common::skip_without_python("python3 with librosa");
        return;
    }
    let reference = load(&out);
    let mut npz = NpzReader::new(std::fs::File::open(&out).unwrap()).unwrap();
    let offset: ndarray::Array0<i64> = npz.by_name("offset").unwrap();
    let offset = offset.into_scalar() as usize;

    let mut source = FileSource::open(&clip).unwrap();
    let mut decoded = Vec::new();
    let mut buf = Vec::new();
    while source.read_chunk(&mut buf).unwrap() {
        decoded.extend_from_slice(&buf);
    }
    let excerpt = &decoded[offset..offset + reference.audio.len()];
    assert_eq!(
        excerpt,
        &reference.audio[..],
        "symphonia and soundfile decode differently"
    );
    assert_matches("blues.00000 @ 10 s", &reference, &windows(excerpt, &[4096]));
}
