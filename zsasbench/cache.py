"""On-disk cache of anomaly maps, per-category results and method stage outputs.

Layout: <cache_root>/<method>/<config-hash>/<dataset>-<root-hash>/<category>/
    maps/<sha1(sample id)>.npy   one map (float16, or float32 where float16 would overflow)
    stage/                       a method's per-category outputs (e.g. IAP-AS prompts)
    result-<scoring>.json        the category's metrics once scored (protocol, limit, metrics mode)
    figures-<scoring>/           its PR curve and qualitative grid
Every write goes to a temporary file in the same folder and is renamed into place, so a killed
process never leaves a half-written file that reads back as valid.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

FLOAT16_MAX = 65504.0


def stable_hash(text: str, length: int = 12) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:length]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=True, default=str).encode("utf-8"))


def _npy_bytes(arr: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    return buf.getvalue()


@dataclass(frozen=True)
class CategoryCache:
    """The cache folder of one (method + config + weights profile, dataset, category)."""

    root: Path

    @property
    def stage_dir(self) -> Path:
        return self.root / "stage"

    def map_path(self, sample_id: str) -> Path:
        return self.root / "maps" / f"{stable_hash(sample_id, 20)}.npy"

    def load_map(self, sample_id: str) -> np.ndarray | None:
        path = self.map_path(sample_id)
        if not path.is_file():
            return None
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError):
            return None  # unreadable (should not happen with atomic writes): recompute
        return arr.astype(np.float32)

    def save_map(self, sample_id: str, anomaly_map: np.ndarray) -> None:
        m = np.asarray(anomaly_map, dtype=np.float32)
        # float16 halves the disk, but must not turn large finite values into inf.
        stored = m.astype(np.float16) if np.abs(m).max(initial=0.0) < FLOAT16_MAX else m
        atomic_write_bytes(self.map_path(sample_id), _npy_bytes(stored))

    def has_map(self, sample_id: str) -> bool:
        return self.map_path(sample_id).is_file()

    def result_path(self, scoring_key: str) -> Path:
        return self.root / f"result-{stable_hash(scoring_key, 10)}.json"

    def figures_dir(self, scoring_key: str) -> Path:
        return self.root / f"figures-{stable_hash(scoring_key, 10)}"

    def load_result(self, scoring_key: str) -> dict | None:
        path = self.result_path(scoring_key)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None

    def save_result(self, scoring_key: str, result: dict) -> None:
        atomic_write_json(self.result_path(scoring_key), result)


def category_cache(cache_root: Path, method_name: str, method_key: str, dataset: str, dataset_root: Path,
                   category: str) -> CategoryCache:
    """method_key: everything that changes the maps (method version, config, weights profile, seed).
    The dataset folder is part of the key: the same name at another path is other data."""
    data_key = f"{dataset}-{stable_hash(str(Path(dataset_root).resolve()), 8)}"
    return CategoryCache(Path(cache_root) / method_name / stable_hash(method_key) / data_key / category)
