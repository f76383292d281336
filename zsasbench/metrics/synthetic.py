"""Real-like anomaly maps for testing and benchmarking the metrics (no method is run).

Smooth low-frequency background with mild pixel noise, small defect regions (a few ellipses covering
about 0.1-3 % of a defective image) whose scores are raised by a blurred bump of random strength (some
defects are barely visible, as for real zero-shot methods), and the two tie patterns real maps show:
large constant regions (a floor: methods that zero the background) and coarse quantisation (maps
computed in 8 bits or cached as float16). All maps are min-max normalised together to [0, 1], as the
evaluation protocol does per category.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage


def realistic_maps(
    n: int, shape: tuple[int, int] = (256, 256), seed: int = 0, defective: float = 0.65
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """`n` float32 maps in [0, 1] and their bool masks; a fraction `defective` of images has defects."""
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w]
    maps, masks = [], []
    for _ in range(n):
        coarse = rng.normal(size=(max(2, h // 32), max(2, w // 32)))
        m = ndimage.zoom(coarse, (h / coarse.shape[0], w / coarse.shape[1]), order=1)[:h, :w]
        m = 0.3 * m + 0.05 * rng.normal(size=(h, w))
        g = np.zeros((h, w), bool)
        if rng.random() < defective:
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.integers(0, h), rng.integers(0, w)
                ry, rx = rng.uniform(0.01, 0.08) * h, rng.uniform(0.01, 0.08) * w
                g |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            bump = ndimage.gaussian_filter(g.astype(np.float32), sigma=rng.uniform(1.0, 6.0))
            m = m + rng.uniform(0.0, 3.0) * bump / max(float(bump.max()), 1e-6)
        style = rng.random()
        if style < 0.25:  # a floor: large constant regions
            m = np.maximum(m, np.quantile(m, rng.uniform(0.3, 0.9)))
        elif style < 0.5:  # coarse quantisation: heavy ties
            m = np.round(m * 64.0) / 64.0
        maps.append(m.astype(np.float32))
        masks.append(g)
    lo = min(float(m.min()) for m in maps)
    hi = max(float(m.max()) for m in maps)
    maps = [((m - lo) / (hi - lo)).astype(np.float32) for m in maps]
    return maps, masks
