//! Decoding audio files with symphonia (WAV, FLAC, MP3, OGG/Vorbis, AIFF, MKV).

use std::fs::File;
use std::path::Path;

use symphonia::core::codecs::audio::{AudioDecoder, AudioDecoderOptions};
use symphonia::core::errors::Error as SymError;
use symphonia::core::formats::probe::Hint;
use symphonia::core::formats::{FormatOptions, FormatReader, TrackType};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;

use super::{AudioSource, StreamFormat};
use crate::error::{Error, Result};
use crate::limits;

/// A file decoded packet by packet, on demand.
pub struct FileSource {
    name: String,
    format: StreamFormat,
    reader: Box<dyn FormatReader>,
    decoder: Box<dyn AudioDecoder>,
    track_id: u32,
    /// Frames the container declares, when it does.
    declared_frames: Option<u64>,
    decoded_frames: u64,
    done: bool,
}

impl FileSource {
    /// Opens and probes `path`; fails if it holds no decodable audio track.
    /// Only regular files are opened (a folder, FIFO or device is refused
    /// at once); the header's rate and channel count must be inside
    /// [`limits::AUDIO_RATE`] and [`limits::AUDIO_CHANNELS`].
    pub fn open(path: &Path) -> Result<Self> {
        let name = path.display().to_string();
        let file: File = limits::open_regular(path, u64::MAX)?;
        let len = file.metadata().map(|m| m.len()).unwrap_or(0);
        if len == 0 {
            return Err(Error::Empty { what: name });
        }
        let ext = path.extension().and_then(|e| e.to_str());
        Self::from_media(&name, Box::new(file), ext)
    }

    /// Decodes audio from bytes in memory (what the fuzzer feeds);
    /// `ext` hints at the container as a file name's extension would.
    pub fn from_bytes(name: &str, bytes: Vec<u8>, ext: Option<&str>) -> Result<Self> {
        if bytes.is_empty() {
            return Err(Error::Empty { what: name.into() });
        }
        Self::from_media(name, Box::new(std::io::Cursor::new(bytes)), ext)
    }

    fn from_media(name: &str, media: Box<dyn MediaSource>, ext: Option<&str>) -> Result<Self> {
        let name = name.to_string();
        let unsupported = |detail: String| Error::UnsupportedAudio {
            what: name.clone(),
            detail,
        };
        let mss = MediaSourceStream::new(media, Default::default());
        let mut hint = Hint::new();
        if let Some(ext) = ext {
            hint.with_extension(ext);
        }
        let reader = symphonia::default::get_probe()
            .probe(
                &hint,
                mss,
                FormatOptions::default(),
                MetadataOptions::default(),
            )
            .map_err(|e| match e {
                SymError::IoError(io) if io.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Error::CorruptAudio {
                        what: name.clone(),
                        detail: "truncated: the file ends inside its header or first chunk".into(),
                    }
                }
                e => unsupported(e.to_string()),
            })?;
        let track = reader
            .default_track(TrackType::Audio)
            .ok_or_else(|| unsupported("no audio track".into()))?;
        let params = track
            .codec_params
            .as_ref()
            .and_then(|p| p.audio())
            .ok_or_else(|| unsupported("track has no audio codec parameters".into()))?;
        let sample_rate = params
            .sample_rate
            .ok_or_else(|| unsupported("unknown sample rate".into()))?;
        let sample_rate = limits::AUDIO_RATE
            .check(sample_rate)
            .map_err(|e| unsupported(e.to_string()))?;
        let channels = params
            .channels
            .as_ref()
            .map(|c| c.count())
            .ok_or_else(|| unsupported("unknown channel count".into()))?;
        let channels = limits::AUDIO_CHANNELS
            .check(channels)
            .map_err(|e| unsupported(e.to_string()))?;
        let decoder = symphonia::default::get_codecs()
            .make_audio_decoder(params, &AudioDecoderOptions::default())
            .map_err(|e| unsupported(e.to_string()))?;
        let track_id = track.id;
        let declared_frames = track.num_frames;
        Ok(FileSource {
            name,
            format: StreamFormat {
                sample_rate,
                channels,
            },
            reader,
            decoder,
            track_id,
            declared_frames,
            decoded_frames: 0,
            done: false,
        })
    }

    /// Frames decoded so far.
    pub fn decoded_frames(&self) -> u64 {
        self.decoded_frames
    }

    fn corrupt(&self, detail: impl ToString) -> Error {
        Error::CorruptAudio {
            what: self.name.clone(),
            detail: detail.to_string(),
        }
    }

    /// Called at the end of the packets: a stream that stops well short of
    /// its declared length was cut off.
    fn check_complete(&self) -> Result<()> {
        match self.declared_frames {
            // Codec delay and padding can account for a packet's worth.
            Some(declared) if self.decoded_frames + 4096 < declared => Err(Error::Truncated {
                what: self.name.clone(),
                declared,
                decoded: self.decoded_frames,
            }),
            _ => Ok(()),
        }
    }
}

impl AudioSource for FileSource {
    fn format(&self) -> StreamFormat {
        self.format
    }

    fn name(&self) -> &str {
        &self.name
    }

    fn read_chunk(&mut self, buf: &mut Vec<f32>) -> Result<bool> {
        buf.clear();
        if self.done {
            return Ok(false);
        }
        loop {
            let packet = match self.reader.next_packet() {
                Ok(Some(packet)) => packet,
                Ok(None) | Err(SymError::ResetRequired) => {
                    self.done = true;
                    self.check_complete()?;
                    return Ok(false);
                }
                // Every container genrepi reads ends cleanly (`Ok(None)`);
                // running out of bytes inside a packet or page means the
                // file was cut off, even where no length was declared (OGG).
                Err(SymError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.done = true;
                    self.check_complete()?;
                    return Err(Error::CutOff {
                        what: self.name.clone(),
                        seconds: self.decoded_frames as f64 / self.format.sample_rate as f64,
                    });
                }
                Err(e) => return Err(self.corrupt(e)),
            };
            if packet.track_id != self.track_id {
                continue;
            }
            let decoded = match self.decoder.decode(&packet) {
                Ok(decoded) => decoded,
                Err(e) => {
                    let at = self.decoded_frames as f64 / self.format.sample_rate as f64;
                    let detail = format!("{e} at {at:.3} s");
                    return Err(Error::CorruptAudio {
                        what: self.name.clone(),
                        detail,
                    });
                }
            };
            if decoded.spec().channels().count() != self.format.channels {
                let detail = "channel count changes mid-stream";
                return Err(self.corrupt(detail));
            }
            if decoded.frames() == 0 {
                continue;
            }
            buf.resize(decoded.samples_interleaved(), 0.0);
            decoded.copy_to_slice_interleaved(&mut buf[..]);
            if let Some(i) = buf
                .iter()
                .position(|x| !(-limits::SAMPLE_MAGNITUDE..=limits::SAMPLE_MAGNITUDE).contains(x))
            {
                let frame = self.decoded_frames + (i / self.format.channels) as u64;
                let seconds = frame as f64 / self.format.sample_rate as f64;
                if !buf[i].is_finite() {
                    return Err(Error::NonFinite {
                        what: self.name.clone(),
                        seconds,
                    });
                }
                return Err(self.corrupt(format!(
                    "sample {} at {seconds:.3} s is beyond {}x full scale",
                    buf[i],
                    limits::SAMPLE_MAGNITUDE
                )));
            }
            self.decoded_frames += decoded.frames() as u64;
            return Ok(true);
        }
    }
}
