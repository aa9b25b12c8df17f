#!/usr/bin/env python3
"""Play audio files into a FIFO at real time, as raw 48 kHz stereo s16le.

    fifo_player.py FIFO SECONDS CLIP [CLIP...]

For `genrepi listen` without a microphone: ALSA's `file` PCM reads the FIFO
as its capture input (scripts/listen-fifo.sh sets that up). The clips are
decoded with soundfile, resampled to 48 kHz (scipy), duplicated to stereo,
looped for SECONDS, and written in 10 ms chunks on a clock. The FIFO is
opened read-write so the writer neither waits for a reader nor dies with
one. Needs numpy, scipy and soundfile (tests/requirements.txt).
"""
import os
import sys
import time
from math import gcd

import numpy as np
import soundfile as sf
from scipy.signal import resample_poly

RATE = 48_000


def load(path):
    x, sr = sf.read(path, dtype="float32", always_2d=True)
    x = x.mean(axis=1)
    g = gcd(RATE, sr)
    x = resample_poly(x, RATE // g, sr // g).astype(np.float32)
    s = (np.clip(x, -1, 1) * 32767).astype("<i2")
    return np.repeat(s, 2)  # interleaved stereo


def main():
    fifo, seconds, clips = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
    audio = np.concatenate([load(c) for c in clips])
    fd = os.open(fifo, os.O_RDWR)
    chunk = RATE // 100 * 2
    total = int(seconds * RATE) * 2
    start = time.monotonic()
    written = 0
    while written < total:
        pos = written % len(audio)
        piece = audio[pos:pos + chunk]
        os.write(fd, piece.tobytes())
        written += len(piece)
        delay = start + written / 2 / RATE - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    # Keep the FIFO open (silence) until killed, so the reader sees no
    # end-of-file while it is being stopped.
    silence = np.zeros(chunk, "<i2").tobytes()
    while True:
        os.write(fd, silence)
        time.sleep(0.01)


if __name__ == "__main__":
    main()
