#!/usr/bin/env python3
"""genrepi's model pipeline: features -> train -> export -> quantize -> evaluate -> report.

    python3 models/pipeline.py --cv-only --recipes loop,before   # choose a recipe by CV
    python3 models/pipeline.py --recipe loop --ship              # the full run, shipped
    python3 models/pipeline.py --quick                           # smoke test, minutes

The pipeline itself is the package models/genrepi_train (its docstring says
what each stage does, one module each); this file is its command line.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from genrepi_train.cli import main  # noqa: E402

if __name__ == "__main__":
    main()
