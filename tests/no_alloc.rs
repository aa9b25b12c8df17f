//! After warm-up, the streaming parts allocate nothing per chunk or per
//! window: the mel stream, the capture ring's writer (the audio callback's
//! only work) and the live window queue. (Its own test binary, with a
//! counting allocator that counts per thread.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::{Duration, Instant};

use genrepi::audio::capture::ring;
use genrepi::audio::{AudioSource, StreamFormat};
use genrepi::features::{FeatureConfig, MelStream};
use genrepi::scheduler::{Pop, WindowMeta, WindowQueue};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

fn count() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations() -> usize {
    ALLOCATIONS.with(|c| c.get())
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn mel_stream_steady_state_does_not_allocate() {
    let cfg = FeatureConfig::default();
    let audio: Vec<f32> = (0..cfg.sample_rate as usize * 20)
        .map(|i| (i as f32 * 0.05).sin() * 0.3)
        .collect();
    let mut stream = MelStream::new(&cfg, cfg.hop_frames_for(1.0)).unwrap();
    let mut windows = 0;
    stream.push(&audio[..cfg.window_samples()], |_| windows += 1);
    let before = allocations();
    for chunk in audio[cfg.window_samples()..].chunks(1000) {
        stream.push(chunk, |w| {
            windows += 1;
            assert_eq!(w.values.len(), 128 * 130);
        });
    }
    let after = allocations();
    assert!(windows > 10, "{windows} windows");
    assert_eq!(
        after - before,
        0,
        "allocations while streaming {windows} windows"
    );
}

#[test]
fn capture_ring_writer_and_reader_do_not_allocate() {
    let format = StreamFormat {
        sample_rate: 48_000,
        channels: 2,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let (mut writer, mut reader) = ring::<i16>("test", format, 0.5, stop);
    let period = vec![1000i16; 960];
    let mut chunk = Vec::with_capacity(4096);
    writer.write(&period);
    assert!(reader.read_chunk(&mut chunk).unwrap());
    let before = allocations();
    for _ in 0..1000 {
        // What the cpal callback does, including overflowing the ring.
        writer.write(&period);
        writer.write(&period);
        assert!(reader.read_chunk(&mut chunk).unwrap());
    }
    assert_eq!(allocations() - before, 0, "allocations in 1000 periods");
    // The ring filled up, so the overrun path ran too.
    assert!(writer.stats().overruns() > 0 && writer.stats().lost_samples() > 0);
}

#[test]
fn window_queue_push_and_pop_do_not_allocate() {
    let q = WindowQueue::new(2, 128 * 130);
    let window = vec![0.5f32; 128 * 130];
    let mut out = vec![0.0f32; 128 * 130];
    let meta = |seq| WindowMeta {
        seq,
        end_s: 0.0,
        level_db: -20.0,
        ready: Instant::now(),
    };
    q.push(&window, meta(0));
    let _ = q.pop_into(&mut out, Duration::ZERO);
    let before = allocations();
    for i in 0..1000 {
        q.push(&window, meta(i));
        q.push(&window, meta(i));
        q.push(&window, meta(i)); // drops the oldest
        assert!(matches!(
            q.pop_into(&mut out, Duration::ZERO),
            Pop::Window(_)
        ));
    }
    assert_eq!(allocations() - before, 0, "allocations in 1000 rounds");
    assert!(q.dropped() >= 1000);
}
