"""The command line of models/pipeline.py."""
import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from .common import ROOT, STATE, log, sibling, write_manifest
from .data import Data, features, fold_split, held_out_folder, quick_subset, stratified_folds
from .evaluate import (
    cross_validate, cv_table, evaluate, fold_result, tract_max_diff, zero_fraction)
from .qat import DEFAULT_FORMAT, quantize
from .report import bench_manifest, ship, write_report
from .train import (Crops, RECIPES, cpu_has_bf16, device_of, fit_fold, prune_and_finetune,
                    second_stage_words)
from .variants import (
    DYN, FP16, FP16W, FP32, NATIVE_SAME, PRUNED, SEED_IN, STATIC_QAT, export, qat_finetune,
    variants)


def recipe_of(name, base, args):
    """RECIPES[name] over the command line's settings. A recipe may set its
    own epoch count (loop20-fitval); --epochs and --quick still win, for
    both stages of a two-stage recipe (`from`, `then`: loop20-fitval+10),
    which otherwise inherits every setting of its first stage."""
    spec = RECIPES[name]
    if "from" in spec:
        first = recipe_of(spec["from"], base, args)
        then = dict(spec["then"])
        if args.epochs or args.quick:
            then["epochs"] = base["epochs"]
        return dict(first, name=name, first=first, then=then)
    recipe = dict(base, name=name, **spec)
    if args.epochs or args.quick:
        recipe["epochs"] = base["epochs"]
    return recipe


def cv_only(args, data_dirs, base, started):
    """Every recipe of --recipes on the same k folds by track: each fold
    trained (cached in OUT/checkpoints) and evaluated on its held-out tracks
    in PyTorch FP32, full clips and short excerpts apart. Writes OUT/cv.json
    and OUT/CV.md after every fold, so a stopped run keeps what it did."""
    recipes = args.recipes.split(",")
    limit = min(args.folds, args.cv_limit or args.folds)
    results = {}
    cv_json, cv_md = args.out / "cv.json", args.out / "CV.md"
    if cv_json.exists():
        results = {r: v for r, v in json.loads(cv_json.read_text()).get("recipes", {}).items()
                   if r in recipes}

    def publish():
        minutes = (time.time() - started) / 60
        cv_json.write_text(json.dumps({"folds": args.folds, "data": [str(d) for d in args.data],
                                       "minutes": minutes, "recipes": results}, indent=1))
        cv_md.write_text("\n".join(cv_table(results, args.folds, args)) + "\n")
        log(f"wrote {cv_md}")

    for name in recipes:
        recipe = recipe_of(name, base, args)
        x, y, clip, meta = features(data_dirs, args.out, recipe["short_input"])
        data = Data(x, y, clip, meta)
        fold_of = stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks)
        crops = (Crops(data_dirs, args.out, recipe["short_input"], recipe["crop_hop"])
                 if recipe["crop_hop"] else None)
        done = {f["fold"] for f in results.get(name, {}).get("folds", [])}
        results.setdefault(name, {"recipe": recipe, "folds": []})
        for f in range(limit):
            if f in done:
                continue
            t0 = time.time()
            row = fold_result(data, f, fit_fold(data, fold_of, f, recipe, args.out, crops))
            row["wall_minutes"] = (time.time() - t0) / 60
            results[name]["folds"].append(row)
            log(f"CV {name} fold {f}: {json.dumps(row)}")
            publish()
    publish()


# ---------------------------------------------------------------- main
def main():
    ap = argparse.ArgumentParser(description="genrepi's model pipeline: features -> train -> export "
                                 "-> quantize -> evaluate -> report")
    ap.add_argument("--data", type=Path, action="append", default=None,
                    help="GTZAN-layout folder (DIR/<genre>/<clip>); repeat for several "
                         "(default: ../shared/gtzan-mini and ../shared/gtzan-excerpts)")
    ap.add_argument("--recipe", default="loop", choices=sorted(RECIPES),
                    help="the recipe trained for the shipped model (default loop)")
    ap.add_argument("--recipes", default="loop,before",
                    help="recipes --cv-only cross-validates, comma-separated "
                         f"(of {', '.join(sorted(RECIPES))})")
    ap.add_argument("--out", type=Path, default=ROOT / "models/work",
                    help="checkpoints, exported variants, evaluation reports")
    ap.add_argument("--report", type=Path, default=None,
                    help="default: models/REPORT.md (OUT/REPORT.md with --quick)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke test in minutes: 4 clips per genre, ResNet-18, 2 epochs")
    ap.add_argument("--arch", default=None, help="torchvision ResNet (default resnet152)")
    ap.add_argument("--epochs", type=int, default=None,
                    help="at most (default: the recipe's own, else 14)")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--patience", type=int, default=4, help="early stopping")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto",
                    help="training arithmetic; auto: bf16 autocast where the CPU has native "
                         "bf16 (AVX-512 BF16, AMX), else fp32. Part of the recipe: the shipped "
                         "model trained in fp32")
    ap.add_argument("--folds", type=int, default=4,
                    help="k for cross-validation; fold 0 is the shipped model's held-out set")
    ap.add_argument("--cv-limit", type=int, default=None,
                    help="train and evaluate only the first N folds (the report says so)")
    ap.add_argument("--prune-epochs", type=int, default=None, help="fine-tuning (default 2)")
    ap.add_argument("--qat-epochs", type=int, default=None,
                    help="quantization-aware fine-tuning for static INT8 (default 10)")
    ap.add_argument("--compare-epochs", type=int, default=None,
                    help="epochs for the 3x299x299 vs 1x128x130 comparison (default 2)")
    ap.add_argument("--slow-tract-clips", type=int, default=3,
                    help="held-out clips tract evaluates INT8 dynamic on (slow here)")
    ap.add_argument("--report-only", action="store_true",
                    help="rewrite the report (and with --ship the manifest) from OUT/results.json")
    ap.add_argument("--cv-only", action="store_true",
                    help="cross-validation alone: every fold of every recipe in --recipes "
                         "trained (cached) and evaluated; writes OUT/CV.md and OUT/cv.json")
    ap.add_argument("--ship", action="store_true",
                    help="copy the chosen variant into models/ as genrepi's default model")
    args = ap.parse_args()
    if args.ship and args.quick:
        ap.error("--quick models are smoke tests: they are never shipped")
    if args.data is None:
        args.data = [p for p in (ROOT.parent / "shared/gtzan-mini",
                                 ROOT.parent / "shared/gtzan-excerpts") if p.is_dir()]
    for d in args.data:
        if not d.is_dir():
            ap.error(f"--data {d}: not a folder")
    unknown = [r for r in args.recipes.split(",") if r not in RECIPES]
    if unknown:
        ap.error(f"--recipes: unknown {', '.join(unknown)} (of {', '.join(sorted(RECIPES))})")
    arch = args.arch or ("resnet18" if args.quick else "resnet152")
    epochs = args.epochs or (2 if args.quick else 14)
    prune_epochs = args.prune_epochs or (1 if args.quick else 2)
    qat_epochs = args.qat_epochs or (1 if args.quick else 10)
    compare_epochs = args.compare_epochs or (1 if args.quick else 2)
    report_path = args.report or (args.out / "REPORT.md" if args.quick else ROOT / "models/REPORT.md")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.time()

    data_dirs = ([quick_subset(d, args.out, 4, i) for i, d in enumerate(args.data)]
                 if args.quick else args.data)
    base = {"arch": arch, "input": "1x128x130", "epochs": epochs, "batch": args.batch,
            "lr": args.lr, "patience": args.patience, "seed": args.seed,
            "precision": args.precision if args.precision != "auto" else (
                "bf16" if cpu_has_bf16() or device_of() == "cuda" else "fp32")}
    if args.cv_only:
        return cv_only(args, data_dirs, base, started)
    recipe = recipe_of(args.recipe, base, args)
    STATE.short_input = recipe["short_input"]
    if args.report_only:
        return report_only(args, data_dirs, report_path)
    x, y, clip, meta = features(data_dirs, args.out)
    labels = meta["labels"]
    data = Data(x, y, clip, meta)
    fold_of = stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks)
    crops = Crops(data_dirs, args.out, STATE.short_input, recipe["crop_hop"]) if recipe["crop_hop"] else None

    # The model genrepi ships: fold 0 held out.
    first = fit_fold(data, fold_of, 0, recipe, args.out, crops)
    net, history, (fit, val, test), key = first
    held_out = held_out_folder(data, test, args.out)
    name = f"{arch}-gtzan-{len(meta['clips'])}"
    fp32 = args.out / f"{name}.onnx"
    export(net, fp32, "1x128x130")
    best = (len(history) if recipe.get("fit_val")
            else int(np.argmax([h["val_window_acc"] for h in history])) + 1)
    provenance = {
        "trained": "models/pipeline.py" + (" --quick" if args.quick else ""),
        "data": f"GTZAN-layout folders {', '.join(d.name for d in args.data)}: "
                f"{len(meta['clips'])} clips of {len(set(data.tracks))} tracks "
                f"({int(data.short.sum())} shorter than a window)",
        "split": f"by track, stratified by genre, seed {args.seed}: fold 0 of {args.folds} held "
                 f"out ({len(test)} clips); {len(fit)} training clips, "
                 + (f"{len(val)} of them also validation clips" if recipe.get("fit_val")
                    else f"and {len(val)} validation clips"),
        "short_input": f"{STATE.short_input} (recipe {args.recipe})",
        "held_out": data.names(test),
        "arch": f"torchvision {arch}, 1-channel conv1, from scratch",
        "epochs": f"{len(history)} run, weights of epoch {best} "
                  + ("(the last; validation clips trained on)" if recipe.get("fit_val")
                     else "(best validation)"),
        "recipe": f"{args.recipe}: AdamW lr {args.lr} one-cycle, batch {args.batch}, "
                  + second_stage_words(recipe)
                  + (f"random crops every {recipe['crop_hop']} s, " if recipe["crop_hop"] else "")
                  + f"time shift, gain, SpecAugment masks, mixup, {recipe['precision']} arithmetic",
        "torch": torch.__version__,
    }
    write_manifest(fp32, name, labels, "1x128x130", provenance)
    calib = x[data.sel(fit)][:: max(1, int(data.sel(fit).sum()) // 64)]
    same = lambda xs: xs
    rows = []
    paths = variants(fp32, calib)
    for vname, path in paths.items():
        manifest = write_manifest(path, name, labels, "1x128x130",
                                  dict(provenance, variant=vname))
        skip = ("skipped: tract computes FP16 ~250x slower than FP32 on CPUs without FP16 "
                "arithmetic (NOTES.md); PIPELINE_TRACT_FP16=1 runs it") if (
            vname == FP16 and not os.environ.get("PIPELINE_TRACT_FP16")) else None
        # tract's int8 matmul on this AVX2-only CPU runs ~60x slower than its
        # FP32 one (examples/profile_ops.rs): a subset keeps the run in hand.
        rows.append(evaluate(vname, manifest, path, held_out, data, test, same, args.out, skip,
                             tract_clips=args.slow_tract_clips if vname == DYN else None))
        log(json.dumps(rows[-1]))

    # Static INT8 after quantization-aware fine-tuning (models/genrepi_train/qat.py).
    qat_history = qat_finetune(fp32, data, fit, val, calib, qat_epochs)
    path = sibling(fp32, "int8-qop-qat")
    quantize(sibling(fp32, "qat-fp32"), path, calib, DEFAULT_FORMAT)
    manifest = write_manifest(path, name, labels, "1x128x130",
                              dict(provenance, variant=STATIC_QAT))
    rows.append(evaluate(STATIC_QAT, manifest, path, held_out, data, test, same, args.out))
    log(json.dumps(rows[-1]))

    pruned, prune_history = prune_and_finetune(net, key, data, fit, val, 0.5, prune_epochs,
                                               args.out)
    path = sibling(fp32, "pruned50")
    export(pruned, path, "1x128x130")
    manifest = write_manifest(path, name, labels, "1x128x130", dict(provenance, variant=PRUNED))
    rows.append(evaluate(PRUNED, manifest, path, held_out, data, test, same, args.out))
    rows[-1]["zero_fraction"] = zero_fraction(path)
    log(json.dumps(rows[-1]))

    # The seed's resized input against the native one, at the same small budget.
    compare = {}
    for input, vname in [("3x299x299", SEED_IN), ("1x128x130", NATIVE_SAME)]:
        r = {k: v for k, v in recipe.items() if k not in ("first", "then")}  # from scratch
        r.update(input=input, epochs=compare_epochs, patience=compare_epochs)
        cnet, chist, _, _ = fit_fold(data, fold_of, 0, r, args.out, crops)
        path = sibling(fp32, f"{input}-{compare_epochs}ep")
        export(cnet, path, input)
        manifest = write_manifest(path, name, labels, input, dict(provenance, variant=vname))
        prep = (lambda xs: torch.nn.functional.interpolate(
            torch.from_numpy(xs), size=(299, 299), mode="bilinear",
            align_corners=False).expand(-1, 3, -1, -1).contiguous().numpy()) \
            if input == "3x299x299" else same
        row = evaluate(f"{vname}, {compare_epochs} epochs", manifest, path, held_out, data,
                       test, prep, args.out)
        row["epoch_seconds"] = float(np.mean([h["seconds"] for h in chist]))
        compare[input] = row
        log(json.dumps(row))

    results = {"recipe": recipe, "calib": len(calib), "compare_epochs": compare_epochs,
               "fp16w_vs_fp32": tract_max_diff(args.out, rows, FP32, FP16W),
               "history": history, "prune_history": prune_history, "rows": rows,
               "qat_history": qat_history,
               "compare": compare}

    def publish(folds):
        """Results, shipped manifest and report so far: rewritten after each
        cross-validation fold, so an interrupted run still leaves them."""
        results.update(folds=folds, minutes=(time.time() - started) / 60,
                       cached_training_minutes=STATE.cached_minutes)
        (args.out / "results.json").write_text(json.dumps(results, indent=1))
        shipped = (ship(rows, provenance, folds, args.folds, name, labels, args.out)
                   if args.ship else None)
        bench_manifest(rows, provenance, name, labels, args.out)
        write_report(report_path, args, data, (fit, val, test), results, shipped)

    cross_validate(data, fold_of, args.folds, args.cv_limit or args.folds, recipe, first,
                   args.out, publish, crops)


def report_only(args, data_dirs, report_path):
    """The report (and shipped manifest) again from the last run's results,
    after a change to the report's text: no training, no evaluation (the
    features are cut again by genrepi, which takes seconds)."""
    x, y, clip, meta = features(data_dirs, args.out)
    data = Data(x, y, clip, meta)
    results = json.loads((args.out / "results.json").read_text())
    split = fold_split(data, stratified_folds(data.clip_labels, args.folds, args.seed, data.tracks), 0,
                       args.seed)
    name = Path(results["rows"][0]["file"]).stem
    bench_manifest(results["rows"], {"trained": "models/pipeline.py"}, name, meta["labels"],
                   args.out)
    shipped = None
    if args.ship:
        manifest = (ROOT / "models/default.toml").read_text()
        model = next(l for l in manifest.splitlines() if l.startswith("model ="))
        metrics = next(l for l in manifest.splitlines() if l.startswith("metrics ="))
        shipped = {"file": json.loads(model.split("=", 1)[1]),
                   "metrics": json.loads(metrics.split("=", 1)[1])}
    write_report(report_path, args, data, split, results, shipped)
