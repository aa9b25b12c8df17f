"""Features from `genrepi features` (never Python feature code), tracks, folds and splits by track."""
import json
import shutil
import sys
from pathlib import Path

import numpy as np

from .common import GENREPI, ROOT, STATE, run


def features_manifest(out: Path, policy: str) -> Path:
    """A manifest for `genrepi features` with the shipped front-end and
    normalisation and `short_input = policy`. It runs the tiny test model
    (the features do not depend on the network; it loads in milliseconds)."""
    tiny = ROOT / "models/tiny/tiny.toml"
    text = tiny.read_text()
    text = text.replace('model = "tiny.onnx"', f'model = {json.dumps(str(tiny.parent / "tiny.onnx"))}')
    text = text.replace("top_db = 80.0", f'top_db = 80.0\nshort_input = "{policy}"')
    path = out / f"features-{policy}.toml"
    path.write_text(text)
    return path


def features(data_dirs, out: Path, policy: str = None, hop: float = None):
    """Windows of every clip in `data_dirs` (GTZAN-layout folders) from
    `genrepi features`, one run per folder, concatenated: non-overlapping
    windows, or every `hop` seconds. Short recordings become a window as
    `policy` says."""
    if not GENREPI.exists():
        run(["cargo", "build", "--release", "--bin", "genrepi"], cwd=ROOT)
    policy = policy or STATE.short_input
    manifest = features_manifest(out, policy)
    xs, ys, clips, meta = [], [], [], None
    for i, data in enumerate(data_dirs if isinstance(data_dirs, (list, tuple)) else [data_dirs]):
        tag = f"{policy}-{i}" + (f"-hop{hop}" if hop else "")
        npz = out / f"features-{tag}.npz"
        cmd = [GENREPI, "--model", manifest, "features", data, "--out", npz]
        run(cmd + (["--hop", str(hop)] if hop else []))
        d = np.load(npz)
        m = json.loads(npz.with_suffix(".json").read_text())
        offset = len(meta["clips"]) if meta else 0
        xs.append(d["x"].astype(np.float32))
        ys.append(d["y"].astype(np.int64))
        clips.append(d["clip"].astype(np.int64) + offset)
        if meta is None:
            meta = m
        else:
            if m["labels"] != meta["labels"]:
                sys.exit(f"error: {data}: its genres differ from {data_dirs[0]}'s")
            for key in ("clips", "clip_seconds", "clip_short", "failed"):
                meta[key] = meta[key] + m[key]
    return np.concatenate(xs), np.concatenate(ys), np.concatenate(clips), meta


def track_of(path: str) -> str:
    """A clip's track: its file name without the extension (GTZAN's
    `genre.00042`), so every cut of one track lands in the same fold."""
    return Path(path).stem


def split_clips(clip_labels: np.ndarray, test_fraction: float, seed: int, tracks=None):
    """Stratified split of clip indices by track: per genre, a fixed-seed
    shuffle of the tracks; every clip of a track goes where its track goes."""
    tracks = np.asarray(tracks if tracks is not None else np.arange(len(clip_labels)))
    rng = np.random.default_rng(seed)
    train, test = [], []
    for g in np.unique(clip_labels):
        ids = sorted(set(tracks[clip_labels == g].tolist()))
        rng.shuffle(ids)
        n_test = max(1, int(round(len(ids) * test_fraction)))
        chosen = set(ids[:n_test])
        for c in np.flatnonzero(clip_labels == g):
            (test if tracks[c] in chosen else train).append(int(c))
    return sorted(train), sorted(test)


class Data:
    """Windows from `genrepi features`, with each clip's genre and track."""

    def __init__(self, x, y, clip, meta):
        self.x, self.y, self.clip, self.meta = x, y, clip, meta
        self.clip_labels = np.array([y[clip == c][0] for c in range(len(meta["clips"]))])
        self.tracks = np.array([track_of(c) for c in meta["clips"]])
        # Recordings shorter than one window (GTZAN excerpts): reported apart.
        self.short = np.array([s is not None for s in meta.get("clip_short",
                                                                [None] * len(meta["clips"]))])

    def sel(self, clips):
        return np.isin(self.clip, clips)

    def names(self, clips):
        return [Path(self.meta["clips"][c]).name for c in clips]


def stratified_folds(clip_labels: np.ndarray, k: int, seed: int, tracks=None) -> np.ndarray:
    """The fold of each clip, by track: per genre, a fixed-seed shuffle of
    its tracks dealt round-robin; every clip of a track shares its fold."""
    tracks = np.asarray(tracks if tracks is not None else np.arange(len(clip_labels)))
    rng = np.random.default_rng(seed)
    fold_of = np.empty(len(clip_labels), np.int64)
    for g in np.unique(clip_labels):
        ids = sorted(set(tracks[clip_labels == g].tolist()))
        rng.shuffle(ids)
        fold = {t: i % k for i, t in enumerate(ids)}
        for c in np.flatnonzero(clip_labels == g):
            fold_of[c] = fold[tracks[c]]
    return fold_of


def fold_split(data: Data, fold_of: np.ndarray, fold: int, seed: int):
    """Fold `fold` is held out; the rest is split again into training clips
    and validation clips (for early stopping), stratified, by track."""
    test = np.flatnonzero(fold_of == fold).tolist()
    rest = np.flatnonzero(fold_of != fold)
    fit, val = split_clips(data.clip_labels[rest], 0.15, seed + 1 + fold, data.tracks[rest])
    fit, val = rest[fit].tolist(), rest[val].tolist()
    assert not (set(fit) | set(val)) & set(test)
    assert not set(data.tracks[fit]) & set(data.tracks[test])
    return fit, val, test


# ---------------------------------------------------------------- evaluation
def held_out_folder(data: Data, test_clips, out: Path) -> Path:
    """A GTZAN-layout folder of symlinks to the held-out clips."""
    d = out / "held-out"
    shutil.rmtree(d, ignore_errors=True)
    for c in test_clips:
        src = Path(data.meta["clips"][c])
        (d / src.parent.name).mkdir(parents=True, exist_ok=True)
        (d / src.parent.name / src.name).symlink_to(src.resolve())
    return d


def subset_folder(held_out: Path, n: int) -> Path:
    """The first `n` clips of `held_out`, one genre after another."""
    d = held_out.with_name(f"{held_out.name}-{n}")
    shutil.rmtree(d, ignore_errors=True)
    clips = sorted(held_out.glob("*/*"))
    for c in clips[:: max(1, len(clips) // n)][:n]:
        (d / c.parent.name).mkdir(parents=True, exist_ok=True)
        (d / c.parent.name / c.name).symlink_to(c.resolve())
    return d


def quick_subset(data_dir: Path, out: Path, per_genre: int, index: int = 0) -> Path:
    """A GTZAN-layout folder of symlinks to the first clips of each genre."""
    d = out / f"quick-data-{index}"
    shutil.rmtree(d, ignore_errors=True)
    for genre in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        (d / genre.name).mkdir(parents=True)
        for clip in sorted(genre.iterdir())[:per_genre]:
            (d / genre.name / clip.name).symlink_to(clip.resolve())
    return d
