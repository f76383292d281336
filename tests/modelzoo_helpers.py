"""Helpers for the model-zoo tests: a fake Hugging Face hub cache and seeded test images."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def fake_hub_snapshot(cache: Path, repo_id: str, revision: str = "0" * 40, branch: str | None = "main") -> Path:
    """The snapshot folder of `repo_id` at `revision` in a hub-cache layout (files go in it, as downloads do)."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    snap = repo / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    if branch:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / branch).write_text(revision)
    return snap


def random_image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
