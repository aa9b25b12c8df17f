//! After warm-up, the mel stream allocates nothing per frame or per window.
//! (Its own test binary: the counting allocator is process-wide.)

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use genrepi::features::{FeatureConfig, MelStream};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
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
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for chunk in audio[cfg.window_samples()..].chunks(1000) {
        stream.push(chunk, |w| {
            windows += 1;
            assert_eq!(w.values.len(), 128 * 130);
        });
    }
    let after = ALLOCATIONS.load(Ordering::Relaxed);
    assert!(windows > 10, "{windows} windows");
    assert_eq!(
        after - before,
        0,
        "allocations while streaming {windows} windows"
    );
}
