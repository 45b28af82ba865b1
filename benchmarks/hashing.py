"""What the content hashes of dataset files cost: SHA-256 seconds per GB, and its share of `irno prepare`.

    python -m benchmarks.hashing [--quick] [--gb 1] [--grid 128] [--trajectories 8] [--repeats 3]

The manifest records every data file's SHA-256 (`irno download` and `irno simulate` hash each file
once) and `irno prepare` hashes every file of its split again before reading it. Measured here:

- `irno.files.file_sha256` over a file of random bytes, with the file in the page cache (the
  hashing alone) and with its pages dropped first (``posix_fadvise(DONTNEED)``: read from this
  machine's disk, whose speed says nothing about a cluster's file system), best of the repeats;
- `irno.data.store.prepare_split` of the train split of an active_matter-shaped synthetic
  dataset (11 channels, 81 frames), which includes the hash check, against the hashing of the same
  files alone, in turn: the check's share of a prepare with the files in the page cache;
- the same rates applied to The Well's active_matter (``--dataset-gb``, 51.3 GB in 82 files; its
  train split 45 of them).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks import common
from irno.data.store import prepare_split
from irno.files import file_sha256, read_json

NAME = "hashing"
TRAIN_SHARE = 45 / 82  # active_matter's train files among all its files (equal sizes)


def _random_file(path: Path, gb: float) -> int:
    """Write `gb` GB of random bytes (SHA-256 takes as long on any content), flushed to disk."""
    block = 1 << 24
    size = max(block, int(gb * 1e9) // block * block)
    with open(path, "wb") as f:
        for _ in range(size // block):
            f.write(os.urandom(block))
        f.flush()
        os.fsync(f.fileno())
    return size


def _drop_from_page_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def time_hashing(path: Path, size: int, repeats: int) -> list[dict]:
    rows = []
    for case, cold in (("page cache", False), ("read from disk", True)):
        walls, cpus = [], []
        for _ in range(repeats):
            if cold:
                _drop_from_page_cache(path)
            else:
                file_sha256(path)  # brings the file into the page cache
            with common.Clock() as clock:
                file_sha256(path)
            walls.append(clock.wall)
            cpus.append(clock.cpu)
        gb = size / 1e9
        rows.append(
            {
                "case": f"sha256 of a {gb:.2f} GB file, {case}",
                "gb": gb,
                "wall_s": min(walls),
                "cpu_s": min(cpus),
                "wall_s_per_gb": min(walls) / gb,
                "cpu_s_per_gb": min(cpus) / gb,
                "load_avg_1min": os.getloadavg()[0],
            }
        )
    return rows


def time_prepare(root: Path, args) -> tuple[list[dict], float]:
    """prepare_split (hash check included) against the hashing of the same files alone, in turn."""
    manifest = common.synthetic_dataset(root, grid=args.grid, frames=81, trajectories=args.trajectories)
    entries = read_json(manifest)["splits"]["train"]
    folder = root / "well" / "datasets" / "active_matter" / "data" / "train"
    gb = sum(e["bytes"] for e in entries) / 1e9
    seconds = common.interleaved(
        {
            "prepare": lambda: prepare_split(manifest, "train", root / "store"),
            "hash": lambda: [file_sha256(folder / e["file"]) for e in entries],
        },
        args.repeats,
    )
    prepare, hashing = min(seconds["prepare"]["wall"]), min(seconds["hash"]["wall"])
    rows = [
        {
            "case": f"irno prepare, train split ({args.trajectories} trajectories, {args.grid}^2, 81 frames), "
            "hash check included",
            "gb": gb,
            "wall_s": prepare,
            "cpu_s": min(seconds["prepare"]["cpu"]),
            "wall_s_per_gb": prepare / gb,
            "cpu_s_per_gb": min(seconds["prepare"]["cpu"]) / gb,
            "load_avg_1min": os.getloadavg()[0],
        },
        {
            "case": "sha256 of the same files (the hash check alone)",
            "gb": gb,
            "wall_s": hashing,
            "cpu_s": min(seconds["hash"]["cpu"]),
            "wall_s_per_gb": hashing / gb,
            "cpu_s_per_gb": min(seconds["hash"]["cpu"]) / gb,
            "load_avg_1min": os.getloadavg()[0],
        },
    ]
    return rows, 100 * hashing / prepare


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    p.add_argument("--gb", type=float, help="size of the hashed file in GB (default: 0.25 quick, 1 full)")
    p.add_argument("--grid", type=int, help="grid of the prepared split (default: 64 quick, 128 full)")
    p.add_argument("--trajectories", type=int, help="trajectories of the prepared split (default: 4 quick, 8 full)")
    p.add_argument("--repeats", type=int, help="runs per case, the fastest counts (default: 2 quick, 3 full)")
    p.add_argument("--dataset-gb", type=float, default=51.3, help="size of the dataset to extrapolate to")
    args = p.parse_args(argv)
    args.gb = args.gb or (0.25 if args.quick else 1.0)
    args.grid = args.grid or (64 if args.quick else 128)
    args.trajectories = args.trajectories or (4 if args.quick else 8)
    args.repeats = args.repeats or (2 if args.quick else 3)
    common.set_threads(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        size = _random_file(root / "random.bin", args.gb)
        rows = time_hashing(root / "random.bin", size, args.repeats)
        (root / "random.bin").unlink()
        prepare_rows, share = time_prepare(root, args)
    rows += prepare_rows
    warm, cold = rows[0]["wall_s_per_gb"], rows[1]["wall_s_per_gb"]
    heads = [
        common.headline("SHA-256, file in the page cache", warm, "s/GB"),
        common.headline("SHA-256, file read from this machine's disk", cold, "s/GB"),
        common.headline(
            "irno prepare, files in the page cache (hash check included)", rows[2]["wall_s_per_gb"], "s/GB"
        ),
        common.headline("the hash check's share of irno prepare", share, "%"),
        common.headline(
            f"hashing The Well's active_matter ({args.dataset_gb:g} GB), page-cache rate",
            warm * args.dataset_gb / 60,
            "min",
        ),
        common.headline(
            f"the same for its train split ({TRAIN_SHARE * args.dataset_gb:.0f} GB): one irno prepare's check",
            warm * TRAIN_SHARE * args.dataset_gb,
            "s",
        ),
    ]
    notes = [
        "A file system slower than the hashing (about 1 GB/s and less) sets the pace instead: the check then costs "
        "one extra read of the split.",
    ]
    return common.report(NAME, args, rows, heads, notes)


if __name__ == "__main__":
    main()
