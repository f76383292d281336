"""Checking and normalising the arrays handed to the metrics (shared by exact and streaming code)."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zsasbench.errors import UserError


def as_list(arrays, what: str) -> list[np.ndarray]:
    """A stacked (N, H, W) array, a single (H, W) array or a sequence of (H, W) arrays -> list of 2-D
    arrays. Torch CPU tensors work too (through np.asarray)."""
    if isinstance(arrays, np.ndarray) or (hasattr(arrays, "__array__") and not isinstance(arrays, Sequence)):
        arr = np.asarray(arrays)
        if arr.ndim == 2:
            return [arr]
        if arr.ndim == 3:
            return list(arr)
        raise UserError(f"{what}: expected a (N, H, W) stack or a list of (H, W) arrays, got shape {arr.shape}")
    return [np.asarray(a) for a in arrays]


def image_name(i: int, ids) -> str:
    return f"image {ids[i]!r}" if ids is not None else f"image #{i}"


def check_map(m: np.ndarray, name: str) -> np.ndarray:
    """A 2-D float map (float16 is widened to float32; integer maps to float64)."""
    if m.ndim != 2:
        raise UserError(f"{name}: anomaly map must be 2-D (H, W), got shape {m.shape}")
    if m.dtype == np.float16:
        return m.astype(np.float32)
    if m.dtype.kind != "f":
        if m.dtype.kind not in "iub":
            raise UserError(f"{name}: anomaly map has non-numeric dtype {m.dtype}")
        return m.astype(np.float64)
    return m


def check_finite(lo: float, hi: float, name: str) -> None:
    """`lo`, `hi` are the map's min and max; NaN propagates through both."""
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise UserError(f"{name}: anomaly map contains NaN or infinite values")


def check_mask(mask: np.ndarray, shape: tuple, name: str) -> np.ndarray:
    """A bool mask of the map's shape; masks may be bool or numbers that are all 0 or 1."""
    if mask.shape != tuple(shape):
        raise UserError(
            f"{name}: mask shape {mask.shape} differs from anomaly map shape {tuple(shape)} "
            "(resize maps to the mask size before scoring: that is the protocol's job)"
        )
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype.kind not in "iuf":
        raise UserError(f"{name}: mask has non-numeric dtype {mask.dtype}")
    if mask.dtype.kind == "u" and mask.itemsize == 1:
        bad = bool(np.any(mask > 1))
    else:
        bad = bool(np.any((mask != 0) & (mask != 1)))
    if bad:
        raise UserError(f"{name}: mask values must be bool or 0/1 (binarise resized masks first)")
    return mask.view(np.bool_) if mask.dtype.itemsize == 1 and mask.dtype.kind == "u" else mask != 0


def check_ids(ids, n: int):
    if ids is None:
        return None
    ids = list(ids)
    if len(ids) != n:
        raise UserError(f"got {len(ids)} image ids for {n} anomaly maps")
    return ids


def pairs(maps, masks, ids=None, offset: int = 0):
    """Yield (name, map, bool mask) after checking counts, dimensions, shapes and mask values.
    Finiteness is checked by the callers, which compute min/max anyway."""
    maps = as_list(maps, "maps")
    masks = as_list(masks, "masks")
    if len(maps) != len(masks):
        raise UserError(f"got {len(maps)} anomaly maps but {len(masks)} masks")
    ids = check_ids(ids, len(maps))
    for i, (m, g) in enumerate(zip(maps, masks)):
        name = image_name(i, ids) if ids is not None else f"image #{offset + i}"
        m = check_map(m, name)
        yield name, m, check_mask(g, m.shape, name)


def image_scores_and_labels(scores_or_maps, labels) -> tuple[np.ndarray, np.ndarray]:
    """Image scores (given, or each map's maximum) and 0/1 labels (given, or whether a mask has any
    positive pixel)."""
    scores = _per_image(scores_or_maps, "scores", lambda m: m.max())
    labels = _per_image(labels, "labels", lambda g: g.any())
    if len(scores) != len(labels):
        raise UserError(f"got {len(scores)} image scores but {len(labels)} labels")
    if not np.all(np.isfinite(scores)):
        i = int(np.flatnonzero(~np.isfinite(scores))[0])
        raise UserError(f"image #{i}: image score is NaN or infinite")
    if not np.all((labels == 0) | (labels == 1)):
        raise UserError("image labels must be bool or 0/1")
    return scores.astype(np.float64), labels.astype(bool)


def _per_image(values, what: str, reduce) -> np.ndarray:
    """1-D values as given; 2-D arrays (one per image) reduced to one value each."""
    if isinstance(values, np.ndarray) or not isinstance(values, Sequence):
        arr = np.asarray(values)
        if arr.ndim == 1:
            return arr
        if arr.ndim == 3:
            return np.array([reduce(a) for a in arr])
        raise UserError(f"image {what}: expected N values or N 2-D maps/masks, got shape {arr.shape}")
    items = [np.asarray(v) for v in values]
    if all(a.ndim == 0 for a in items):
        return np.array([a.item() for a in items])
    if all(a.ndim == 2 for a in items):
        return np.array([reduce(a) for a in items])
    raise UserError(f"image {what}: expected N values or N 2-D maps/masks")
