"""genrepi's model pipeline (the package behind models/pipeline.py): features -> train -> export -> quantize -> evaluate -> report.

    python3 models/pipeline.py --cv-only --recipes loop,before   # choose a recipe by CV
    python3 models/pipeline.py --recipe loop --ship              # the full run, shipped
    python3 models/pipeline.py --quick                           # smoke test, minutes

Modules, in import order (none imports a later one): `manifest` (the one
manifest writer, labels, normalisation), `common` (paths, logging, the run's
short-input policy), `data` (features from genrepi, folds by track),
`train` (networks, recipes, the training loop), `qat` (quantization-aware
fine-tuning), `fp16` (FP16 weights), `variants` (export, FP16/INT8
variants), `evaluate` (tract and onnxruntime, cross-validation), `report`
(models/REPORT.md, its pictures, shipping), `cli` (the command line).

Dependencies: models/requirements.txt. `--data` takes any GTZAN-layout
folder (DIR/<genre>/<clip>) and can be repeated; the default is
../shared/gtzan-mini plus ../shared/gtzan-excerpts.

1. Features come from `genrepi features` (never from Python feature code),
   one run per folder: non-overlapping 1x128x130 windows, normalised as the
   manifest says; a recording shorter than a window becomes one as the
   recipe's `short_input` says (silence padding or looping), exactly as
   genrepi will treat it once the manifest says so. Recipes with random
   crops also read windows cut every 0.5 s.
2. Tracks (a file name without its extension: GTZAN's `genre.00042`) are
   dealt into k folds stratified by genre (fixed seed): every cut of one
   track lands in one fold. The shipped model holds out fold 0; the rest is
   split again by track into training and validation (early stopping).
3. torchvision's ResNet-152 (1-channel conv1) trains from scratch with
   random crops, time shift, gain, SpecAugment masks and mixup, AdamW
   one-cycle (on a GPU when PyTorch sees one).
4. Export to ONNX with a genrepi manifest (labels, features, short-input
   policy, normalisation, checksum, provenance), then the variants: FP16 on
   disk widened at load, FP16, INT8 dynamic, INT8 static per-channel, INT8
   QOperator per-tensor after quantization-aware fine-tuning
   (models/tools/qat_int8.py), 50% pruned and fine-tuned, and the seed's
   3x299x299 input at an equal small budget.
5. Every variant is evaluated with `genrepi eval` (tract) and onnxruntime on
   the same held-out windows, with their agreement; the other folds give
   the cross-validated accuracy.
6. models/REPORT.md is written; with --ship the chosen variant becomes
   models/default.toml.

Trained networks are cached in OUT/checkpoints under a hash of everything that
decides them, so a rerun (or an interrupted run) only trains what is missing.
`--cv-only` trains and evaluates every fold of every recipe in `--recipes`
on the same folds and writes OUT/CV.md (full clips and short excerpts apart),
which is how the shipped recipe is chosen.
"""
