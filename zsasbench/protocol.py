"""The evaluation protocol, the same for every method.

1. Each anomaly map is resized to the evaluation size (default 400x400, as the reference IAP-AS
   evaluation; `native` keeps each mask's own resolution): bilinear for maps, nearest for masks.
2. Maps are min-max normalised per category (over all its test images) to [0, 1].
3. Pixels are pooled per category; metrics are computed per category and averaged (unweighted)
   over the categories of a dataset.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from .errors import UserError

DEFAULT_EVAL_SIZE = 400


@dataclass(frozen=True)
class Protocol:
    eval_size: int | None = DEFAULT_EVAL_SIZE  # None = native (each mask's own resolution)
    normalisation: str = "category-minmax"
    pooling: str = "category"

    @classmethod
    def parse(cls, eval_size: str | int | None) -> "Protocol":
        if eval_size is None or str(eval_size).lower() == "native":
            return cls(eval_size=None)
        try:
            size = int(eval_size)
        except ValueError:
            raise UserError(f"--eval-size {eval_size!r}: expected a positive integer or 'native'") from None
        if size <= 0:
            raise UserError(f"--eval-size {eval_size!r}: expected a positive integer or 'native'")
        return cls(eval_size=size)

    @property
    def label(self) -> str:
        size = "native" if self.eval_size is None else f"{self.eval_size}x{self.eval_size}"
        return f"{size}/{self.normalisation}/{self.pooling}"

    def as_params(self) -> dict[str, str]:
        return {"protocol.eval_size": "native" if self.eval_size is None else str(self.eval_size),
                "protocol.normalisation": self.normalisation, "protocol.pooling": self.pooling}

    def target_hw(self, mask_hw: tuple[int, int]) -> tuple[int, int]:
        return tuple(mask_hw) if self.eval_size is None else (self.eval_size, self.eval_size)


def resize_map(anomaly_map: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to (H, W) (pixel-centre aligned, like align_corners=False)."""
    anomaly_map = np.asarray(anomaly_map, dtype=np.float32)
    if anomaly_map.shape == tuple(hw):
        return anomaly_map
    img = Image.fromarray(anomaly_map, mode="F")
    return np.asarray(img.resize((hw[1], hw[0]), Image.BILINEAR), dtype=np.float32)


def resize_mask(mask: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of a bool mask to (H, W)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.shape == tuple(hw):
        return mask
    img = Image.fromarray(mask.astype(np.uint8) * 255)
    return np.asarray(img.resize((hw[1], hw[0]), Image.NEAREST)) > 127


def check_map(anomaly_map: np.ndarray, image_hw: tuple[int, int], where: str) -> np.ndarray:
    """A method's output must be a finite HxW map for its image (before any resizing)."""
    m = np.asarray(anomaly_map)
    if m.ndim != 2:
        raise ValueError(f"{where}: anomaly map must be 2-D (H, W), got shape {m.shape}")
    if m.shape != tuple(image_hw):
        raise ValueError(f"{where}: anomaly map shape {m.shape} differs from the image's (H, W) {tuple(image_hw)}")
    if not np.isfinite(m).all():
        raise ValueError(f"{where}: anomaly map has NaN or inf values")
    return m.astype(np.float32, copy=False)


def minmax(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] to [0, 1]; a constant category maps to all zeros."""
    if hi <= lo:
        return np.zeros_like(values, dtype=np.float32)
    return np.clip((values - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
