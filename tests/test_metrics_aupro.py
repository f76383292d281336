"""AUPRO against a straightforward reference: binarise at every distinct threshold, measure each
region's overlap, integrate PRO over FPR up to the limit."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import ndimage

from zsasbench.metrics import PixelMetrics, UndefinedMetricWarning, pixel_aupro
from zsasbench.metrics.synthetic import realistic_maps


def reference_aupro(maps, masks, fpr_limit=0.3) -> float:
    regions = []  # (image index, bool region mask)
    for i, g in enumerate(masks):
        labels, n = ndimage.label(np.asarray(g, bool), structure=np.ones((3, 3)))
        regions += [(i, labels == k) for k in range(1, n + 1)]
    n_neg = sum(int((~np.asarray(g, bool)).sum()) for g in masks)
    points = [(0.0, 0.0)]
    for t in np.unique(np.concatenate([np.ravel(m) for m in maps]))[::-1]:
        predicted = [np.asarray(m) >= t for m in maps]
        fp = sum(int((p & ~np.asarray(g, bool)).sum()) for p, g in zip(predicted, masks))
        pro = np.mean([(predicted[i] & r).sum() / r.sum() for i, r in regions])
        points.append((fp / n_neg, pro))
    # Integrate the piecewise-linear curve from 0 to the limit, segment by segment.
    area = 0.0
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:]):
        if x0 >= fpr_limit:
            break
        if x1 > fpr_limit:
            y1 = y0 + (y1 - y0) * (fpr_limit - x0) / (x1 - x0)
            x1 = fpr_limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / fpr_limit


def check(maps, masks, fpr_limit=0.3, bins=2**20):
    want = reference_aupro(maps, masks, fpr_limit)
    assert pixel_aupro(maps, masks, fpr_limit) == pytest.approx(want, abs=1e-12)
    exact = PixelMetrics(exact=True, fpr_limit=fpr_limit)
    exact.update(maps, masks)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)  # image level: one class only
        result = exact.compute()
    assert result["pixel_aupro"] == pytest.approx(want, abs=1e-12)
    return want


@pytest.mark.parametrize("fpr_limit", [0.3, 0.05, 1.0])
def test_random_maps_with_ties(fpr_limit):
    rng = np.random.default_rng(0)
    maps = np.floor(rng.random((4, 12, 12)) * 20) / 20
    masks = np.zeros((4, 12, 12), bool)
    masks[0, 2:5, 2:6] = True
    masks[0, 8:11, 8:9] = True
    masks[2, 0:12, 5:7] = True
    maps[masks] += 0.2 * rng.random(masks.sum())
    check(maps, masks, fpr_limit)


def test_real_like_maps_and_streaming():
    maps, masks = realistic_maps(6, (40, 40), seed=1)
    want = check(maps, masks)
    streaming = PixelMetrics()
    streaming.update(maps, masks)
    assert streaming.compute()["pixel_aupro"] == pytest.approx(want, abs=1e-4)


def test_small_regions_count_as_much_as_large_ones():
    # One large region fully detected, one single-pixel region missed: PRO is 1/2 at low FPR.
    masks = np.zeros((1, 20, 20), bool)
    masks[0, :10, :10] = True
    masks[0, 15, 15] = True
    maps = np.where(masks, 0.0, 0.5)
    maps[0, :10, :10] = 1.0
    # Thresholds: 1.0 -> FPR 0, PRO 1/2; 0.5 -> FPR 1, PRO 1/2; 0.0 -> (1, 1).
    assert check(maps, masks) == pytest.approx(0.5)


def test_diagonal_pixels_form_one_region():
    masks = np.zeros((1, 8, 8), bool)
    masks[0, 1, 1] = masks[0, 2, 2] = True  # 8-connected: one region of two pixels
    masks[0, 5:7, 5:7] = True  # a second region
    maps = np.full((1, 8, 8), 0.5)
    maps[0, 2, 2] = 0.0
    maps[0, 1, 1] = maps[0, 5:7, 5:7] = 1.0
    # At FPR 0: PRO = (1/2 + 1) / 2 (it would be (1 + 0 + 1) / 3 with 4-connectivity), flat to FPR 1.
    assert check(maps, masks) == pytest.approx(0.75)


def test_perfect_and_inverted_maps():
    masks = np.zeros((2, 10, 10), bool)
    masks[0, 3:6, 3:6] = True
    masks[1, 0, 0] = True
    assert check(masks.astype(float), masks) == pytest.approx(1.0)
    assert check(1.0 - masks, masks) == pytest.approx(0.0)
