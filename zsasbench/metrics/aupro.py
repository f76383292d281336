"""Defect regions for the per-region overlap (PRO) metric.

A region is a connected component of one ground-truth mask with 8-connectivity (diagonal neighbours
join), as in the MVTec AD evaluation code (`scipy.ndimage.label` with a 3x3 structure of ones). Each
positive pixel carries the weight 1 / (size of its region): the weight sum of the positives at or
above a threshold, divided by the number of regions, is the mean overlap of the prediction with each
region. The area under PRO over FPR is computed in `curves.aupro`.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

_EIGHT = np.ones((3, 3), dtype=bool)


def region_weights(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """For a bool mask: (weight of each positive pixel in `mask[mask]` order, number of regions)."""
    rows = np.flatnonzero(mask.any(axis=1))
    if len(rows) == 0:
        return np.empty(0), 0
    cols = np.flatnonzero(mask.any(axis=0))
    # Label only the bounding box of the defects: most of a mask is background.
    box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    labels, n = ndimage.label(box, structure=_EIGHT)
    sizes = np.bincount(labels.ravel())
    # Row-major order inside the box equals row-major order of mask[mask].
    return 1.0 / sizes[labels[box]], int(n)
