"""Build small ONNX models for Slipway's Rust tests, with the training environment's Python.

Two kinds, both deterministic (same arguments, byte-identical files) and both with the
output conventions of train.py: a string tensor ``label`` holding class names and a float32
tensor ``probabilities`` of shape [N, n_classes], no ZipMap.

- ``--kind text --data CSV --out M.onnx``: train.py's TF-IDF + logistic regression, trained
  on one ``text,label`` CSV with a tiny vocabulary, so it builds in well under a second.
  Input: string tensor ``text`` of shape [N, 1].
- ``--kind text-large --out M.onnx``: the shipped model's shape (20,000 TF-IDF features with
  bigrams) trained on synthetic text over a 30,000-word vocabulary, for tests that measure what
  a request costs the server.
- ``--kind features --out M.onnx [--data-out CSV]``: a logistic regression on a synthetic
  numeric data set with classes ``a`` and ``b``. Input: float32 tensor ``features`` of shape
  [N, 4]. ``--data-out`` writes the synthetic holdout (columns f0,f1,f2,f3,label). Every
  feature value is a multiple of 1/64 in [-8, 8], exact in float32 and in its decimal text, so
  a reader of the CSV feeds the model exactly the numbers Python scored.

Usage:
  python training/build_test_models.py --kind text --data CSV --out M.onnx
  python training/build_test_models.py --kind text-large --out M.onnx
  python training/build_test_models.py --kind features --out M.onnx [--data-out CSV]
Exit codes: 0 built; 2 could not build (bad input or unwritable output), one line on stderr.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import traceback
from pathlib import Path

import numpy as np
from skl2onnx.common.data_types import FloatTensorType
from sklearn.linear_model import LogisticRegression

import model
import train

EXIT_ERROR = train.EXIT_ERROR
# Small enough to build fast and keep the model a few kilobytes; min_df 1 because a test CSV
# may have only a handful of rows.
TEXT_PARAMS = train.Params(C=1.0, max_features=64, ngram_max=1, min_df=1, max_iter=200, seed=0)
# The shipped model's vocabulary size and n-grams, on synthetic text.
LARGE_PARAMS = train.Params(C=1.0, max_features=20_000, ngram_max=2, min_df=1, max_iter=200, seed=0)
LARGE_ROWS = 3000
LARGE_WORDS = 30_000
LARGE_WORDS_PER_ROW = 40
FEATURES_GRAPH_NAME = "slipway_features_classifier"
FEATURES_SEED = 0
FEATURES_TRAIN_ROWS = 400
FEATURES_HOLDOUT_ROWS = 200
N_FEATURES = 4
STEPS_PER_UNIT = 64  # feature values are multiples of 1/64


def build_text(data: Path, out: Path) -> str:
    examples = train.read_examples(data)
    train.require_two_classes(data, examples)
    onnx_bytes, classes, _ = model.train_text_model(TEXT_PARAMS, examples.texts, examples.labels)
    train.write_atomic({out: onnx_bytes})
    return f"text model on {len(examples.texts)} rows, classes {'/'.join(classes)}"


def build_text_large(out: Path) -> str:
    rng = np.random.default_rng(LARGE_PARAMS.seed)
    words = [f"w{i:05d}" for i in range(LARGE_WORDS)]
    # Zipf-like word choice, so the vocabulary keeps many frequent bigrams.
    picks = np.minimum(rng.zipf(1.2, size=(LARGE_ROWS, LARGE_WORDS_PER_ROW)) - 1, LARGE_WORDS - 1)
    texts = [" ".join(words[i] for i in row) for row in picks]
    labels = ["fresh" if row[0] % 2 == 0 else "rotten" for row in picks]
    onnx_bytes, classes, _ = model.train_text_model(LARGE_PARAMS, texts, labels)
    train.write_atomic({out: onnx_bytes})
    return f"large text model on {LARGE_ROWS} rows, classes {'/'.join(classes)}"


def synthetic_features(rng: np.random.Generator, rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping Gaussian clouds: class ``b`` sits at +0.75 on every axis, ``a`` at -0.75.

    The overlap makes some predictions uncertain, so tests see probabilities away from 0 and 1.
    """
    labels = np.where(rng.random(rows) < 0.5, "a", "b")
    centres = np.where(labels == "b", 0.75, -0.75)[:, None]
    values = centres + rng.normal(0.0, 1.0, size=(rows, N_FEATURES))
    steps = np.clip(np.round(values * STEPS_PER_UNIT), -8 * STEPS_PER_UNIT, 8 * STEPS_PER_UNIT)
    return (steps / STEPS_PER_UNIT).astype(np.float32), labels


def features_csv(features: np.ndarray, labels: np.ndarray) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow([f"f{i}" for i in range(N_FEATURES)] + ["label"])
    for row, label in zip(features, labels, strict=True):
        writer.writerow([repr(float(v)) for v in row] + [str(label)])
    return buffer.getvalue().encode()


def build_features(out: Path, data_out: Path | None) -> str:
    rng = np.random.default_rng(FEATURES_SEED)
    train_x, train_y = synthetic_features(rng, FEATURES_TRAIN_ROWS)
    holdout_x, holdout_y = synthetic_features(rng, FEATURES_HOLDOUT_ROWS)
    clf = LogisticRegression(random_state=FEATURES_SEED)
    model.fit(clf, train_x, train_y)
    initial_types = [("features", FloatTensorType([None, N_FEATURES]))]
    options = {LogisticRegression: {"zipmap": False}}
    onnx_bytes = model.to_onnx_bytes(clf, initial_types, options, FEATURES_GRAPH_NAME)
    files = {out: onnx_bytes}
    summary = f"features model on {FEATURES_TRAIN_ROWS} rows, classes a/b"
    if data_out is not None:
        files[data_out] = features_csv(holdout_x, holdout_y)
        summary += f"; wrote {FEATURES_HOLDOUT_ROWS} holdout rows to {data_out}"
    train.write_atomic(files)
    return summary


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Build small ONNX models for Slipway's Rust tests.",
        epilog="exit codes: 0 built; 2 could not build (bad input or unwritable output)",
    )
    parser.add_argument("--kind", choices=["text", "text-large", "features"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="the .onnx file to write")
    parser.add_argument("--data", type=Path, help="text,label CSV to train on (text kind)")
    parser.add_argument("--data-out", type=Path, help="where to write the synthetic holdout")
    args = parser.parse_args(argv)
    if args.kind == "text" and (args.data is None or args.data_out is not None):
        parser.error("--kind text needs --data CSV and takes no --data-out")
    if args.kind in ("features", "text-large") and args.data is not None:
        parser.error(f"--kind {args.kind} takes no --data (its data set is synthetic)")
    if args.kind == "text-large" and args.data_out is not None:
        parser.error("--kind text-large takes no --data-out")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = Path(sys.argv[0]).name
    try:
        if args.kind == "text":
            summary = build_text(args.data, args.out)
        elif args.kind == "text-large":
            summary = build_text_large(args.out)
        else:
            summary = build_features(args.out, args.data_out)
    except train.TrainError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except Exception as e:
        # Exit 1 means "a gate rejected the model" in Slipway; a crash is not that.
        traceback.print_exc()
        print(f"{prog}: internal error: {e}", file=sys.stderr)
        return EXIT_ERROR
    print(f"{prog}: {summary}; wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
