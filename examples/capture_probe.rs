use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
fn main() {
    let host = cpal::default_host();
    let t = Instant::now();
    let dev = host.default_input_device().expect("no default");
    eprintln!("default device {dev} after {:?}", t.elapsed());
    for c in dev.supported_input_configs().unwrap() { eprintln!("cfg {c:?}"); }
    let frames = Arc::new(AtomicU64::new(0));
    let first = Arc::new(AtomicU64::new(0));
    let f2 = frames.clone(); let fi = first.clone();
    let cfg = cpal::StreamConfig { channels: 2, sample_rate: 48000, buffer_size: cpal::BufferSize::Default };
    let stream = dev.build_input_stream::<i16,_,_>(cfg, move |d: &[i16], _| {
        if f2.load(Ordering::Relaxed) == 0 { fi.store(d[0] as u16 as u64 | ((d[2] as u16 as u64) << 16), Ordering::Relaxed); }
        f2.fetch_add(d.len() as u64 / 2, Ordering::Relaxed);
    }, |e| eprintln!("stream error: {e} kind {:?}", e.kind()), Some(Duration::from_millis(500))).unwrap();
    stream.play().unwrap();
    eprintln!("playing after {:?}", t.elapsed());
    let mut last = 0;
    for s in 0..12 {
        std::thread::sleep(Duration::from_secs(1));
        let f = frames.load(Ordering::Relaxed);
        eprintln!("t={s} frames/s {} first {:x}", f - last, first.load(Ordering::Relaxed)); last = f;
    }
    let t = Instant::now();
    drop(stream);
    eprintln!("dropped in {:?}", t.elapsed());
}
