"""The networks, augmentation, training recipes, the training loop and its cache."""
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
import torchvision

from .common import STATE, log
from .data import Data, features, fold_split


# ---------------------------------------------------------------- model
class SeedInput(torch.nn.Module):
    """The seed project's input: the mel window resized to 299x299 and
    repeated to 3 channels, inside the graph so genrepi feeds it the same
    1x128x130 window as every other model."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):
        x = torch.nn.functional.interpolate(x, size=(299, 299), mode="bilinear",
                                            align_corners=False)
        return self.net(x.expand(-1, 3, -1, -1))


def make_net(arch: str, classes: int, input: str = "1x128x130") -> torch.nn.Module:
    net = getattr(torchvision.models, arch)(weights=None, num_classes=classes)
    if input == "3x299x299":
        return SeedInput(net)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return net


def augment(x: torch.Tensor, y: torch.Tensor, classes: int, rng: np.random.Generator):
    """Time shift, gain, SpecAugment masks and mixup on normalised windows."""
    n, _, h, w = x.shape
    x = x.clone()
    for i in range(n):
        x[i] = torch.roll(x[i], int(rng.integers(-w // 4, w // 4 + 1)), dims=-1)
        x[i] += float(rng.normal(0, 0.3))  # gain: a dB offset, normalised
        f0, fw = int(rng.integers(0, h)), int(rng.integers(0, h // 8))
        t0, tw = int(rng.integers(0, w)), int(rng.integers(0, w // 8))
        x[i, :, f0:f0 + fw, :] = 0
        x[i, :, :, t0:t0 + tw] = 0
    target = torch.nn.functional.one_hot(y, classes).float()
    lam = float(rng.beta(0.4, 0.4))
    perm = torch.randperm(n)
    return lam * x + (1 - lam) * x[perm], lam * target + (1 - lam) * target[perm]


def cpu_has_bf16() -> bool:
    """bf16 autocast only pays off with native bf16 arithmetic (AVX-512 BF16,
    AMX); without it PyTorch emulates bf16 and a step is several times slower."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def device_of(precision_or_recipe=None) -> str:
    """`cuda` when PyTorch sees a GPU (a lent device machine), else `cpu`;
    PIPELINE_DEVICE overrides. Nothing here needs a GPU."""
    return os.environ.get("PIPELINE_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")


def train(net, x_tr, y_tr, x_va, y_va, epochs, batch, lr, patience, seed, classes, precision,
          groups=None, per_group=None, keep_last=False):
    """AdamW with a one-cycle schedule; keeps the weights of the best
    validation epoch and stops after `patience` epochs without improvement
    (`keep_last`: runs every epoch and keeps the last, the schedule's end,
    for recipes whose validation clips are training clips too).

    Random crops: with `groups` (the clip of each training window, cut
    every fraction of a window) and `per_group` (how many windows to draw
    from each clip per epoch), every epoch sees a fresh random set of crops
    of each clip, as many as its non-overlapping windows; a clip with one
    window (a short excerpt) gives it every epoch."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    dev = device_of()
    net.to(dev)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    pools = None
    if groups is not None:
        pools = [np.flatnonzero(groups == g) for g in np.unique(groups)]
        per_epoch = sum(per_group(len(p)) for p in pools)
    else:
        per_epoch = len(x_tr)
    steps = epochs * sum(1 for s in range(0, per_epoch, batch) if per_epoch - s >= 2)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, steps),
                                                pct_start=0.2)
    best, best_state, waited, history = -1.0, None, 0, []
    xt, yt = torch.from_numpy(x_tr), torch.from_numpy(y_tr)
    bf16 = precision == "bf16"
    log(f"training on {per_epoch} windows an epoch (of {len(xt)}), batch {batch}, "
        f"{'bf16 autocast' if bf16 else 'fp32'}, {dev}")
    for epoch in range(epochs):
        net.train()
        if pools is None:
            order = torch.randperm(len(xt))
        else:
            chosen = np.concatenate([rng.choice(p, per_group(len(p)),
                                                replace=per_group(len(p)) > len(p))
                                     for p in pools])
            order = torch.from_numpy(rng.permutation(chosen))
        t0, losses = time.time(), []
        for s in range(0, len(order), batch):
            idx = order[s:s + batch]
            if len(idx) < 2:
                continue
            xb, tb = augment(xt[idx], yt[idx], classes, rng)
            xb, tb = xb.to(dev), tb.to(dev)
            with torch.autocast(dev, dtype=torch.bfloat16, enabled=bf16):
                out = net(xb)
            loss = torch.nn.functional.cross_entropy(out.float(), tb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
        acc = accuracy(net, x_va, y_va)
        history.append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val_window_acc": acc,
                         "seconds": time.time() - t0})
        log(f"epoch {epoch + 1}: loss {np.mean(losses):.3f}, validation window accuracy {acc:.3f} "
            f"({time.time() - t0:.0f} s)")
        if keep_last:
            if epoch + 1 == epochs:
                best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        elif acc > best:
            best, waited = acc, 0
            best_state = {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                log(f"early stop: no improvement for {patience} epochs")
                break
    net.cpu()
    net.load_state_dict(best_state)
    return history


@torch.no_grad()
def predict(net, x, batch=32):
    net.eval()
    dev = next(net.parameters()).device
    out = [torch.softmax(net(torch.from_numpy(x[s:s + batch]).to(dev)), 1).cpu().numpy()
           for s in range(0, len(x), batch)]
    return np.concatenate(out) if out else np.zeros((0, 10), np.float32)


def accuracy(net, x, y):
    return float((predict(net, x).argmax(1) == y).mean()) if len(y) else float("nan")


def cached_net(cache: Path, key: dict, classes: int, fit):
    """The network `key` describes: trained now by `fit(net) -> history`, or
    loaded when a run with the same key trained it already. The key holds
    everything that decides the result (architecture, input, settings, seed
    and the exact clips), so a changed setting or split trains anew."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    path = cache / f"{key['arch']}-{key['input']}-{digest}.pt"
    net = make_net(key["arch"], classes, key["input"])
    if path.exists():
        saved = torch.load(path)
        net.load_state_dict(saved["state"])
        log(f"loaded {path.name} (trained earlier with the same data and settings)")
        STATE.cached_minutes += sum(h.get("seconds", 0) for h in saved["history"]) / 60
        return net, saved["history"]
    history = fit(net)
    cache.mkdir(parents=True, exist_ok=True)
    torch.save({"state": net.state_dict(), "history": history, "key": key}, path)
    return net, history


# Training recipes, chosen by the cross-validation mean (--cv-only --recipes).
# `train_on`: "all" clips, or only "full" ones (a window or longer);
# `short_input`: how a short recording becomes a window (in training, eval
# and the shipped manifest alike); `crop_hop`: train on random crops cut
# every that many seconds (None: the non-overlapping windows only);
# `repeat_short`: how many times a short clip's window is drawn an epoch;
# `patience`, when given, replaces --patience (`loop14`: never stop early, so
# the one-cycle schedule always anneals to its end; the best validation
# epoch's weights are still the ones kept).
RECIPES = {
    "before": {"train_on": "full", "short_input": "pad", "crop_hop": None, "repeat_short": 1},
    "loop": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5, "repeat_short": 1},
    "pad": {"train_on": "all", "short_input": "pad", "crop_hop": 0.5, "repeat_short": 1},
    "loop-x2": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5, "repeat_short": 2},
    "loop14": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5, "repeat_short": 1,
               "patience": 14},
    # loop14 trained on its validation clips too (15% more tracks), keeping
    # the last epoch's weights instead of the best validation epoch's.
    "loop14-fitval": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5,
                      "repeat_short": 1, "patience": 14, "fit_val": True},
    # loop14-fitval trained 20 epochs: at 14 its training loss was still
    # falling and it classified only 50-70% of its own training windows.
    "loop20-fitval": {"train_on": "all", "short_input": "loop", "crop_hop": 0.5,
                      "repeat_short": 1, "epochs": 20, "patience": 20, "fit_val": True},
    # loop20-fitval's weights trained 10 epochs more (a warm restart: a
    # second one-cycle, to half the first's peak rate, on fresh crops); its
    # 20 epochs are loop20-fitval's own, cached, so a fold costs 10 epochs.
    "loop20-fitval+10": {"from": "loop20-fitval", "then": {"epochs": 10, "lr": 5e-4}},
}


class Crops:
    """Every `crop_hop` seconds of windows of the same clips, for random crops."""

    def __init__(self, data_dirs, out, policy, hop):
        x, y, clip, meta = features(data_dirs, out, policy, hop)
        self.x, self.y, self.clip, self.meta, self.hop = x, y, clip, meta, hop


def second_stage_words(recipe: dict) -> str:
    """How the report and manifest name a recipe's second stage ("" if none)."""
    then = recipe.get("then")
    return (f"then {then['epochs']} more epochs from those weights, a second one-cycle to lr "
            f"{then['lr']}, " if then else "")


def fit_fold(data: Data, fold_of, fold: int, recipe: dict, out: Path, crops: "Crops" = None):
    """Trains `recipe` with fold `fold` held out (cached). `data` holds the
    non-overlapping windows (validation, evaluation); `crops`, when the
    recipe uses random crops, the overlapping ones of the same clips.

    A recipe with `then` is a second stage: its `first` recipe trained
    (cached) on the same fold, then `then["epochs"]` more epochs from those
    weights under a fresh one-cycle to `then["lr"]`, drawing other crops
    (seed + 1); the history holds both stages' epochs."""
    then = recipe.get("then")
    stage = dict(recipe, **then, seed=recipe["seed"] + 1, patience=then["epochs"]) if then else recipe
    fit, val, test = fold_split(data, fold_of, fold, recipe["seed"])
    if recipe.get("train_on") == "full":
        fit = [c for c in fit if not data.short[c]]
    keep_last = bool(recipe.get("fit_val"))
    if keep_last:
        fit = fit + val  # validation figures are then on training clips: logged only
    log(f"fold {fold} ({recipe.get('name', recipe['input'])}, up to {stage['epochs']} epochs"
        + (f" after {recipe['first']['name']}'s" if then else "") + "): "
        f"train {len(fit)} clips, validation {len(val)}, held out {len(test)}")
    key = dict(recipe, fit=data.names(fit), val=data.names(val))
    classes = len(data.meta["labels"])
    x_va, y_va = data.x[data.sel(val)], data.y[data.sel(val)]
    if crops is not None and recipe.get("crop_hop"):
        assert crops.meta["clips"] == data.meta["clips"], "crops and windows of other clips"
        sel = np.isin(crops.clip, fit)
        window_s = 3.0883  # one 130-frame window at 22050 Hz
        stride = window_s / recipe["crop_hop"]
        repeat = recipe.get("repeat_short", 1)
        # A clip cut every crop_hop gives n windows; draw as many as it has
        # non-overlapping ones (a single-window clip: `repeat` times).
        per_group = lambda n: min(n, max(1, int(round(n / stride)))) if n > 1 else repeat
        train_stage = lambda net: train(net, crops.x[sel], crops.y[sel], x_va, y_va,
                                        stage["epochs"], stage["batch"], stage["lr"],
                                        stage["patience"], stage["seed"], classes,
                                        stage["precision"], groups=crops.clip[sel],
                                        per_group=per_group, keep_last=keep_last)
    else:
        train_stage = lambda net: train(net, data.x[data.sel(fit)], data.y[data.sel(fit)], x_va,
                                        y_va, stage["epochs"], stage["batch"], stage["lr"],
                                        stage["patience"], stage["seed"], classes,
                                        stage["precision"], keep_last=keep_last)

    def train_on(net):
        if not then:
            return train_stage(net)
        first, before, _, _ = fit_fold(data, fold_of, fold, recipe["first"], out, crops)
        net.load_state_dict(first.state_dict())
        return before + [dict(h, epoch=len(before) + h["epoch"]) for h in train_stage(net)]

    net, history = cached_net(out / "checkpoints", key, classes, train_on)
    return net, history, (fit, val, test), key


def prune_and_finetune(base, base_key, data, fit, val, amount, epochs, out):
    """Global magnitude pruning of `amount` of all conv and dense weights,
    then `epochs` of fine-tuning with the mask fixed (cached)."""
    from torch.nn.utils import prune
    key = dict(base_key, prune=amount, prune_epochs=epochs)
    classes = len(data.meta["labels"])

    def fit_pruned(net):
        net.load_state_dict(base.state_dict())
        params = [(m, "weight") for m in net.modules()
                  if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
        history = train(net, data.x[data.sel(fit)], data.y[data.sel(fit)], data.x[data.sel(val)],
                        data.y[data.sel(val)], epochs, base_key["batch"], base_key["lr"] / 3,
                        epochs, base_key["seed"] + 7, classes, base_key["precision"])
        for m, name in params:
            prune.remove(m, name)
        return history

    return cached_net(out / "checkpoints", key, classes, fit_pruned)
