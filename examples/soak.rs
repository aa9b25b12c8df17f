//! Soak benchmark: hours of audio through the live scheduler, as fast as
//! possible, with memory read at checkpoints.
//!
//!     cargo run --release --example soak -- --model MANIFEST [--hours 2] [--speed 0]
//!
//! Real GTZAN clips (default: two from ../shared/gtzan-mini), resampled
//! once to 48 kHz stereo i16 — what a USB microphone delivers — are looped
//! into the same capture ring the cpal callback writes, and read by the
//! same [`Pipeline`] (front-end thread, bounded window queue, inference
//! thread) that `genrepi listen` runs. The producer blocks while the ring is
//! full, so every sample is analysed and the window queue, not the ring,
//! absorbs the model being slower than the audio: the drops it counts are
//! the scheduler's. `--speed N` paces the audio at N× real time instead.
//!
//! Prints windows, drops, overruns, latency, and the process's peak RSS
//! (VmHWM) after 1, 10, 30, 60 and 120 minutes of audio and at the end.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use genrepi::audio::{self, AudioSource, Conditioner, FileSource, Opener, Session, StreamFormat};
use genrepi::model::{self, Model};
use genrepi::scheduler::{Counters, Hop, LiveSettings, Pipeline, Verdict};

#[derive(Parser)]
struct Args {
    /// Model manifest.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Hours of audio to push.
    #[arg(long, default_value_t = 2.0)]
    hours: f64,
    /// Multiple of real time to pace at; 0 = as fast as possible.
    #[arg(long, default_value_t = 0.0)]
    speed: f64,
    /// Window hop, seconds.
    #[arg(long, default_value_t = 1.0)]
    hop: f64,
    /// Clips to loop.
    #[arg(long, num_args = 1..)]
    clips: Vec<PathBuf>,
}

const RATE: u32 = 48_000;
const CHANNELS: usize = 2;
/// Audio-time checkpoints, in minutes, at which memory is read.
const CHECKPOINTS: [u64; 5] = [1, 10, 30, 60, 120];

/// Resident memory and its peak (`VmRSS`, `VmHWM`), in kB.
fn memory_kb() -> (u64, u64) {
    let (rss, hwm) = genrepi::platform::resident_memory().unwrap_or_default();
    (rss / 1024, hwm / 1024)
}

/// Decodes a clip and converts it to 48 kHz stereo i16.
fn load(path: &std::path::Path) -> anyhow::Result<Vec<i16>> {
    let mut src = FileSource::open(path)?;
    let f = src.format();
    let mut conv = Conditioner::new(f.sample_rate, f.channels, RATE)?;
    let mut out = Vec::new();
    let mut chunk = Vec::new();
    let mut emit = |mono: &[f32]| {
        for &x in mono {
            let s = (x.clamp(-1.0, 1.0) * 32767.0) as i16;
            out.extend([s, s]);
        }
    };
    while src.read_chunk(&mut chunk)? {
        conv.process(&chunk, &mut emit);
    }
    conv.finish(&mut emit);
    Ok(out)
}

struct SoakOpener {
    audio: Arc<Vec<i16>>,
    total_frames: u64,
    speed: f64,
    done: Arc<AtomicBool>,
    memory: Arc<Mutex<Vec<(u64, u64, u64)>>>,
}

impl Opener for SoakOpener {
    fn open(&mut self, stop: Arc<AtomicBool>) -> genrepi::Result<Session> {
        let format = StreamFormat {
            sample_rate: RATE,
            channels: CHANNELS,
        };
        let ended = Arc::new(AtomicBool::new(false));
        let (mut writer, reader) = audio::capture::ring::<i16>("soak", format, 2.0, ended.clone());
        let stats = reader.stats().clone();
        let (audio, total, speed, done, memory) = (
            self.audio.clone(),
            self.total_frames,
            self.speed,
            self.done.clone(),
            self.memory.clone(),
        );
        let producer = std::thread::spawn(move || {
            let started = Instant::now();
            let chunk = (RATE as usize / 100) * CHANNELS;
            let mut frames = 0u64;
            let mut next_checkpoint = 0;
            'outer: loop {
                for piece in audio.chunks(chunk) {
                    if frames >= total || !writer.write_blocking(piece, &stop) {
                        break 'outer;
                    }
                    frames += (piece.len() / CHANNELS) as u64;
                    if next_checkpoint < CHECKPOINTS.len()
                        && frames >= CHECKPOINTS[next_checkpoint] * 60 * RATE as u64
                    {
                        let (rss, hwm) = memory_kb();
                        if let Ok(mut m) = memory.lock() {
                            m.push((CHECKPOINTS[next_checkpoint], hwm, rss));
                        }
                        next_checkpoint += 1;
                    }
                    if speed > 0.0 {
                        let due = Duration::from_secs_f64(frames as f64 / RATE as f64 / speed);
                        if let Some(wait) = due.checked_sub(started.elapsed()) {
                            std::thread::sleep(wait);
                        }
                    }
                }
            }
            while writer.pending() > 0 && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(1));
            }
            done.store(true, Ordering::Relaxed);
            ended.store(true, Ordering::Relaxed);
        });
        Ok(Session {
            guard: Box::new(producer),
            source: Box::new(reader),
            stats,
        })
    }

    fn exhausted(&self) -> bool {
        self.done.load(Ordering::Relaxed)
    }
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let model = Model::load(&model::locate(args.model.as_deref())?, 1)?;
    let shared = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/gtzan-mini");
    let clips = if args.clips.is_empty() {
        vec![
            shared.join("rock/rock.00000.wav"),
            shared.join("jazz/jazz.00000.wav"),
        ]
    } else {
        args.clips.clone()
    };
    let mut audio = Vec::new();
    for c in &clips {
        audio.extend(load(c)?);
    }
    let audio_mb = audio.len() as f64 * 2.0 / 1e6;
    let total_frames = (args.hours * 3600.0 * RATE as f64) as u64;
    let memory = Arc::new(Mutex::new(Vec::new()));
    let opener = SoakOpener {
        audio: Arc::new(audio),
        total_frames,
        speed: args.speed,
        done: Arc::new(AtomicBool::new(false)),
        memory: memory.clone(),
    };
    let latencies = Arc::new(Mutex::new(Vec::<(f64, f64)>::with_capacity(1 << 16)));
    let sink_lat = latencies.clone();
    let sink = Box::new(move |v: &Verdict<'_>| {
        if let (Some(c), Ok(mut l)) = (&v.result, sink_lat.lock()) {
            l.push((
                v.latency.as_secs_f64() * 1e3,
                c.inference.as_secs_f64() * 1e3,
            ));
        }
    });
    let settings = LiveSettings {
        hop: Hop::Fixed(args.hop),
        silence_db: -120.0,
        ..LiveSettings::default()
    };
    let counters = Arc::new(Counters::default());
    let rss_before = memory_kb().0;
    let started = Instant::now();
    let pipeline = Pipeline::start(
        &settings,
        model.classifier()?,
        Box::new(opener),
        counters.clone(),
        sink,
        true,
    )?;
    while !pipeline.finished() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let wall = started.elapsed().as_secs_f64();
    pipeline.stop(Duration::from_secs(5));
    let (end_rss, end_hwm) = memory_kb();

    let seconds = total_frames as f64 / RATE as f64;
    println!(
        "soak: {:.0} s ({:.2} h) of 48 kHz stereo i16 audio, looped from {} clip(s) ({audio_mb:.1} MB held), \
         through the live scheduler in {wall:.1} s ({:.0}x real time{})",
        seconds,
        seconds / 3600.0,
        clips.len(),
        seconds / wall,
        if args.speed > 0.0 {
            format!(", paced at {}x", args.speed)
        } else {
            ", unpaced".into()
        }
    );
    println!(
        "model: {} ({:.1} MB), hop {} s, queue {}, deadline {:?}",
        model.manifest().name,
        model.onnx_bytes() as f64 / 1e6,
        args.hop,
        settings.queue,
        settings.deadline_for(args.hop)
    );
    let c = &counters;
    println!(
        "windows {}, classified {}, dropped {} (queue full {}, past deadline {}), overruns {}, errors {}",
        c.windows.load(Ordering::Relaxed),
        c.verdicts.load(Ordering::Relaxed),
        c.dropped(),
        c.dropped_full.load(Ordering::Relaxed),
        c.dropped_late.load(Ordering::Relaxed),
        c.overruns.load(Ordering::Relaxed),
        c.errors.load(Ordering::Relaxed)
    );
    let lat = latencies.lock().unwrap();
    let mut l: Vec<f64> = lat.iter().map(|x| x.0).collect();
    let mut inf: Vec<f64> = lat.iter().map(|x| x.1).collect();
    l.sort_by(f64::total_cmp);
    inf.sort_by(f64::total_cmp);
    println!(
        "latency window->verdict ms: median {:.1}, p99 {:.1}, max {:.1}; inference ms: median {:.1}, max {:.1}",
        percentile(&l, 0.5),
        percentile(&l, 0.99),
        l.last().copied().unwrap_or(f64::NAN),
        percentile(&inf, 0.5),
        inf.last().copied().unwrap_or(f64::NAN)
    );
    println!(
        "RSS before start: {:.1} MB (model loaded, audio decoded)",
        rss_before as f64 / 1024.0
    );
    let mem = memory.lock().unwrap();
    for (minute, hwm, rss) in mem.iter() {
        println!(
            "after {minute:>3} min of audio: peak RSS {:.2} MB, RSS {:.2} MB",
            *hwm as f64 / 1024.0,
            *rss as f64 / 1024.0
        );
    }
    println!(
        "end:                      peak RSS {:.2} MB, RSS {:.2} MB",
        end_hwm as f64 / 1024.0,
        end_rss as f64 / 1024.0
    );
    if let Some((_, first_hwm, _)) = mem.first() {
        println!(
            "peak RSS growth from 1 min of audio to the end: {} kB",
            end_hwm as i64 - *first_hwm as i64
        );
    }
    Ok(())
}
