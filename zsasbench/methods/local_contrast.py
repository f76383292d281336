"""`local-contrast`: a classical, weight-free zero-shot method.

A pixel's score is the local root-mean-square deviation of the image from its own background, at a
few window sizes (max over windows). Uniform surfaces score low; spots, scratches, cracks and texture
breaks score high. No training, no reference images, no learned weights. Scores stay in absolute
brightness units (no per-image normalisation), so under the protocol's per-category min-max an image
with a strong defect scores higher than a clean one.

The background is chosen per image (`axis_background`, default on):

* Many industrial surfaces are lit or machined along one axis (cylindrical tiles, rolled sheet,
  brushed or ground metal): brightness varies across the streaks but hardly along them. If the
  image's per-column median profile explains its brightness at least `axis_ratio` times better
  (residual variance) than the per-row profile, the background is that column profile (and vice
  versa for rows). Unlike a Gaussian trend, this profile does not absorb a large defect region such
  as a brighter/darker band or blob, because the median along the whole axis ignores it; it also
  removes the dark tile borders and highlights that run along the axis.
* Otherwise (isotropic textures, objects) the background is a Gaussian trend of sigma
  `background_sigma`, as before.

The residual is centred on its median and its local energy is the score. On the MTD sample this
lifts pixel AP from 0.071 to 0.082 (F1-max 0.130 to 0.142), mainly on MT_Uneven and MT_Break; the
built-in synthetic set (no dominant axis) is unchanged. `axis_background=false` gives the previous
method exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import ndimage

from ..errors import UserError
from ..protocol import resize_map
from .base import Method, MethodConfig, PrepareContext


@dataclass
class LocalContrastConfig(MethodConfig):
    windows: tuple[int, ...] = (5, 11)  # local window sizes, pixels at working size
    background_sigma: float = 24.0  # Gaussian sigma of the illumination trend (no dominant axis)
    working_size: int = 256  # longer side is resized to this before scoring (speed, scale invariance)
    smoothing_sigma: float = 2.0  # final map smoothing
    axis_background: bool = True  # use a row/column median profile when one axis dominates
    axis_ratio: float = 2.0  # how much better (residual variance) one axis profile must fit

    def __post_init__(self):
        rules = [(len(self.windows) > 0 and all(int(w) >= 1 for w in self.windows), "windows: at least one size >= 1"),
                 (self.background_sigma > 0, "background_sigma: > 0"), (self.working_size >= 16, "working_size: >= 16"),
                 (self.smoothing_sigma >= 0, "smoothing_sigma: >= 0"), (self.axis_ratio >= 1, "axis_ratio: >= 1")]
        broken = [rule for ok, rule in rules if not ok]
        if broken:
            raise UserError(f"local-contrast config {self}: {'; '.join(broken)}")


def background(g: np.ndarray, cfg: LocalContrastConfig) -> np.ndarray:
    """The image's normal brightness: an axis profile if one axis dominates, else a Gaussian trend."""
    if cfg.axis_background:
        cols = np.median(g, axis=0)[None, :]  # varies across x only: streaks run vertically
        rows = np.median(g, axis=1)[:, None]
        var_cols = _spread(g - cols)
        var_rows = _spread(g - rows)
        if var_rows > cfg.axis_ratio * var_cols:
            return np.broadcast_to(cols, g.shape)
        if var_cols > cfg.axis_ratio * var_rows:
            return np.broadcast_to(rows, g.shape)
    return ndimage.gaussian_filter(g, cfg.background_sigma, mode="reflect")


def _spread(residual: np.ndarray) -> float:
    return float(np.mean((residual - np.median(residual)) ** 2))


class LocalContrast(Method):
    name = "local-contrast"
    display_name = "LocalContrast"
    Config = LocalContrastConfig
    description = ("Local RMS deviation from the image's own background (axis profile or Gaussian trend); "
                   "classical, no weights.")

    def prepare(self, context: PrepareContext) -> None:
        pass

    def score(self, image: np.ndarray) -> np.ndarray:
        cfg = self.config
        h, w = image.shape[:2]
        grey = image.astype(np.float32).mean(axis=2) / 255.0
        scale = cfg.working_size / max(h, w)
        small_hw = (max(8, round(h * scale)), max(8, round(w * scale)))
        g = resize_map(grey, small_hw)
        d = g - background(g, cfg)
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
