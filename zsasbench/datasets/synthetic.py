"""`synthetic`: procedurally generated industrial surfaces and simple objects with exact defect masks.

Deterministic from the seed, written once in the MVTec AD folder layout (default runs/data/synthetic)
and then read like any MVTec-style dataset. It lets `zsasbench run` do real work on a fresh machine.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from .mvtec import MVTecAD

SIZE = (120, 160)  # (H, W): non-square on purpose, so (W, H) mix-ups fail loudly
CATEGORIES = ("fabric", "granite", "washer")
N_TEST_NORMAL = 10
N_TEST_DEFECT = 20
N_TRAIN = 10
DEFECTS = ("scratch", "spot", "crack")
FORMAT_VERSION = 1


def _texture(category: str, rng: np.random.Generator) -> np.ndarray:
    h, w = SIZE
    yy, xx = np.mgrid[:h, :w].astype(np.float32)
    if category == "fabric":
        period = rng.uniform(5.5, 6.5)
        angle = rng.uniform(-0.1, 0.1)
        u = xx * np.cos(angle) + yy * np.sin(angle)
        v = -xx * np.sin(angle) + yy * np.cos(angle)
        base = 0.5 + 0.18 * np.sin(2 * np.pi * u / period) * np.sin(2 * np.pi * v / period)
        base += ndimage.gaussian_filter(rng.normal(0, 0.06, (h, w)), 1.0)
        tint = np.array([0.55, 0.45, 0.35])
    elif category == "granite":
        noise = ndimage.gaussian_filter(rng.normal(0, 1, (h, w)), 1.5)
        base = 0.5 + 0.12 * noise / (noise.std() + 1e-6) + rng.normal(0, 0.03, (h, w))
        tint = np.array([0.5, 0.5, 0.52])
    else:  # washer: a ring-shaped metal object on a dark background
        cy, cx = h / 2 + rng.uniform(-4, 4), w / 2 + rng.uniform(-4, 4)
        r = np.hypot(yy - cy, xx - cx)
        ring = (r < 48) & (r > 20)
        base = np.where(ring, 0.7 - 0.002 * (r - 34) ** 2 / 4, 0.15)
        base = base + rng.normal(0, 0.02, (h, w))
        tint = np.array([0.6, 0.6, 0.62])
    rgb = np.clip(base[..., None] * tint[None, None, :] * 1.6, 0, 1)
    return rgb.astype(np.float32)


def _defect_mask(kind: str, category: str, rng: np.random.Generator) -> np.ndarray:
    h, w = SIZE
    yy, xx = np.mgrid[:h, :w]
    mask = np.zeros((h, w), dtype=bool)
    # Keep defects on the object for the washer (inside the ring band).
    cy, cx = h / 2, w / 2
    for _ in range(20):
        y0, x0 = rng.uniform(0.2 * h, 0.8 * h), rng.uniform(0.2 * w, 0.8 * w)
        if category != "washer" or 24 < np.hypot(y0 - cy, x0 - cx) < 44:
            break
    if kind == "spot":
        ry, rx = rng.uniform(3, 7), rng.uniform(3, 7)
        mask = ((yy - y0) / ry) ** 2 + ((xx - x0) / rx) ** 2 <= 1
    elif kind == "scratch":
        angle = rng.uniform(0, np.pi)
        length = rng.uniform(18, 35)
        d = np.abs(-(xx - x0) * np.sin(angle) + (yy - y0) * np.cos(angle))
        t = (xx - x0) * np.cos(angle) + (yy - y0) * np.sin(angle)
        mask = (d <= 1.2) & (np.abs(t) <= length / 2)
    else:  # crack: a jagged random walk, dilated
        y, x = y0, x0
        heading = rng.uniform(0, 2 * np.pi)
        for _ in range(40):
            heading += rng.normal(0, 0.5)
            y, x = y + np.sin(heading), x + np.cos(heading)
            iy, ix = int(round(y)), int(round(x))
            if 0 <= iy < h and 0 <= ix < w:
                mask[iy, ix] = True
        mask = ndimage.binary_dilation(mask, iterations=1)
    if category == "washer":
        r = np.hypot(yy - cy, xx - cx)
        mask &= (r > 18) & (r < 50)
    if not mask.any():
        mask[int(y0), int(x0)] = True
    return mask


def _apply_defect(img: np.ndarray, mask: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    out = img.copy()
    if kind == "spot":
        colour = np.array([0.35, 0.22, 0.1]) if rng.random() < 0.5 else np.array([0.9, 0.9, 0.85])
        soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.8)[..., None]
        out = out * (1 - soft) + colour[None, None, :] * soft
    elif kind == "scratch":
        out[mask] = np.clip(out[mask] + 0.3, 0, 1)
    else:
        out[mask] = out[mask] * 0.35
    return out


def _to_uint8(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    img = img + rng.normal(0, 0.01, img.shape)
    return (np.clip(img, 0, 1) * 255).round().astype(np.uint8)


def generate(root: Path, seed: int = 111) -> None:
    """Write the synthetic dataset to `root` in the MVTec AD layout (idempotent per seed)."""
    root = Path(root)
    stamp = root / "synthetic.json"
    meta = {"format": FORMAT_VERSION, "seed": seed, "size_hw": list(SIZE), "categories": list(CATEGORIES)}
    if stamp.is_file() and json.loads(stamp.read_text()) == meta:
        return
    tmp = root.with_name(root.name + ".tmp")
    if tmp.exists():
        import shutil

        shutil.rmtree(tmp)
    for ci, category in enumerate(CATEGORIES):
        rng = np.random.default_rng([seed, ci])
        cat = tmp / category
        for i in range(N_TRAIN):
            _save(cat / "train" / "good" / f"{i:03d}.png", _to_uint8(_texture(category, rng), rng))
        for i in range(N_TEST_NORMAL):
            _save(cat / "test" / "good" / f"{i:03d}.png", _to_uint8(_texture(category, rng), rng))
        for i in range(N_TEST_DEFECT):
            kind = DEFECTS[i % len(DEFECTS)]
            idx = i // len(DEFECTS)
            img = _texture(category, rng)
            mask = _defect_mask(kind, category, rng)
            _save(cat / "test" / kind / f"{idx:03d}.png", _to_uint8(_apply_defect(img, mask, kind, rng), rng))
            _save(cat / "ground_truth" / kind / f"{idx:03d}_mask.png", mask.astype(np.uint8) * 255)
    (tmp / "synthetic.json").write_text(json.dumps(meta))
    if root.exists():
        import shutil

        shutil.rmtree(root)
    tmp.rename(root)  # atomic: a half-written dataset is never read


def _save(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


class SyntheticDataset(MVTecAD):
    """Built-in synthetic dataset (3 categories, 30 test images each, 10 references)."""

    name = "synthetic"
    kind = "object"
    description = "Procedural surfaces and objects with exact defect masks (built in, no download)."
    source = "generated by zsasbench (deterministic from the seed)"
    official_counts = {}

    def __init__(self, root: str | Path = Path("runs") / "data" / "synthetic", seed: int = 111):
        generate(Path(root), seed)
        super().__init__(root)

    def object_name(self, category: str) -> str:
        return {"fabric": "woven fabric", "granite": "granite surface", "washer": "metal washer"}[category]
