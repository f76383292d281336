"""`local-contrast`: a classical, weight-free zero-shot method.

After removing the slow illumination trend, a pixel's score is the local root-mean-square deviation of
the image from its own median brightness, at a few window sizes (max over windows). Uniform surfaces
score low; spots, scratches, cracks and texture breaks score high. No training, no reference images,
no learned weights; scores are in absolute brightness units, so an image with a strong defect scores
higher than a clean one (per-image normalisation would erase that).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..protocol import resize_map
from .base import Method, MethodConfig, PrepareContext


@dataclass
class LocalContrastConfig(MethodConfig):
    windows: tuple[int, ...] = (5, 11)  # local window sizes, pixels at working size
    background_sigma: float = 24.0  # Gaussian sigma of the illumination trend removed first
    working_size: int = 256  # longer side is resized to this before scoring (speed, scale invariance)
    smoothing_sigma: float = 2.0  # final map smoothing


class LocalContrast(Method):
    name = "local-contrast"
    display_name = "LocalContrast"
    Config = LocalContrastConfig
    description = "Local RMS deviation from the image's own median brightness (classical, no weights)."

    def prepare(self, context: PrepareContext) -> None:
        pass

    def score(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        h, w = image.shape[:2]
        grey = image.astype(np.float32).mean(axis=2) / 255.0
        scale = cfg.working_size / max(h, w)
        small_hw = (max(8, round(h * scale)), max(8, round(w * scale)))
        g = resize_map(grey, small_hw)
        d = g - ndimage.gaussian_filter(g, cfg.background_sigma, mode="reflect")
        d = d - np.median(d)
        energy = np.zeros_like(d)
        for win in cfg.windows:
            energy = np.maximum(energy, ndimage.uniform_filter(d * d, win, mode="reflect"))
        score = np.sqrt(energy)
        if cfg.smoothing_sigma > 0:
            score = ndimage.gaussian_filter(score, cfg.smoothing_sigma)
        return resize_map(score, (h, w))

    def predict(self, images: Sequence[np.ndarray]) -> list[np.ndarray]:
        return [self.score(image) for image in images]
