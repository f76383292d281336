"""Loader speed: images/s for list + decode (image and mask) + resize to 400x400 on the MTD
sample, through zsasbench's loader versus a plain PIL loop over the same files. Target: the loader
adds no more than 10 % over the loop.

    .venv/bin/python benchmarks/loader.py [MTD_ROOT] [--repeats 7]

Every side produces, per image, a 400x400x3 uint8 array and a 400x400 bool mask (bilinear for the
image, nearest for the mask, threshold > 127). The loader sides include listing the dataset (scan
and pairing checks) and the check of every mask's size against its image. Two loader paths:
- `load_resized`: `zsasbench.datasets.common.load_resized(sample, (400, 400))`, the path for code
  that works at a fixed size (decode and resize in PIL, no full-size array);
- `sample arrays`: `sample.image` / `sample.mask` (full-size numpy arrays) resized afterwards;
  it pays one extra copy of each image into an array and back into PIL.
Runs alternate and the best of `repeats` is kept per side (warm file cache). Compared on CPU time
of this process (time.process_time), which other work on a shared machine disturbs far less than
wall time; both are printed.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from zsasbench.datasets import load_dataset  # noqa: E402
from zsasbench.datasets.common import load_resized  # noqa: E402

SIZE = (400, 400)


def plain_loop(root: Path) -> int:
    n = 0
    for img_path in sorted(root.glob("MT_*/Imgs/*.jpg")):
        with Image.open(img_path) as im:
            img = np.asarray(im.convert("RGB").resize(SIZE, Image.BILINEAR))
        with Image.open(img_path.with_suffix(".png")) as m:
            mask = np.asarray(m.convert("L").resize(SIZE, Image.NEAREST)) > 127
        assert img.shape == (400, 400, 3) and mask.shape == SIZE
        n += 1
    return n


def _samples(root: Path):
    ds = load_dataset("mtd", root)
    for cat in ds.categories:
        yield from ds.test_samples(cat) + ds.reference_samples(cat)


def loader_resized(root: Path) -> int:
    n = 0
    for s in _samples(root):
        img, mask = load_resized(s, SIZE)
        assert img.shape == (400, 400, 3) and mask.shape == SIZE
        n += 1
    return n


def loader_arrays(root: Path) -> int:
    n = 0
    for s in _samples(root):
        img = np.asarray(Image.fromarray(s.image).resize(SIZE, Image.BILINEAR))
        # bool -> uint8 view (no copy): PIL's 1-bit mode would pack and unpack bits
        mask = np.asarray(Image.fromarray(s.mask.view(np.uint8)).resize(SIZE, Image.NEAREST)) > 0
        assert img.shape == (400, 400, 3) and mask.shape == SIZE
        s.release()
        n += 1
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", nargs="?", default=str(Path(__file__).resolve().parents[2] / "shared/data/mtd-sample"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    root = Path(args.root)
    sides = {"plain PIL loop": plain_loop, "loader load_resized": loader_resized,
             "loader sample arrays": loader_arrays}
    cpu = {k: float("inf") for k in sides}
    wall = dict(cpu)
    counts = {}
    for fn in sides.values():  # warm the file cache and imports
        fn(root)
    for _ in range(args.repeats):
        for label, fn in sides.items():
            w0, c0 = time.perf_counter(), time.process_time()
            counts[label] = fn(root)
            cpu[label] = min(cpu[label], time.process_time() - c0)
            wall[label] = min(wall[label], time.perf_counter() - w0)
    assert len(set(counts.values())) == 1, counts
    n = counts["plain PIL loop"]
    for label in sides:
        print(f"{label:21s} {n} images: {n / cpu[label]:6.1f} images/s CPU ({cpu[label]:.3f} s), "
              f"{n / wall[label]:6.1f} images/s wall ({wall[label]:.3f} s)")
    for label in list(sides)[1:]:
        overhead = cpu[label] / cpu["plain PIL loop"] - 1
        print(f"{label} overhead (CPU time): {overhead * 100:+.1f} % (target <= +10 %)")


if __name__ == "__main__":
    main()
