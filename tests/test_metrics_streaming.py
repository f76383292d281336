"""PixelMetrics: streaming accuracy against exact values, exact mode against scikit-learn, batching,
buffering, bounds, errors and the PR curve."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from zsasbench.errors import UserError
from zsasbench.metrics import PixelMetrics, UndefinedMetricWarning, pixel_aupro
from zsasbench.metrics.synthetic import realistic_maps

# Image-level metrics are often undefined on these small sets; they are tested in test_metrics_functional.
pytestmark = [
    pytest.mark.filterwarnings("ignore::zsasbench.metrics.UndefinedMetricWarning"),
    pytest.mark.filterwarnings("ignore::sklearn.exceptions.UndefinedMetricWarning"),
]
PIXEL = ("pixel_ap", "pixel_f1_max", "pixel_auroc", "pixel_aupro")


@pytest.fixture(scope="module")
def real_like():
    return realistic_maps(40, (96, 128), seed=11)


def run(maps, masks, batch=8, **kwargs) -> PixelMetrics:
    metrics = PixelMetrics(**kwargs)
    for i in range(0, len(maps), batch):
        metrics.update(maps[i : i + batch], masks[i : i + batch])
    return metrics


def same(a: dict, b: dict) -> bool:
    """Equal dicts, NaN equal to NaN."""
    return a.keys() == b.keys() and all(a[k] == b[k] or (np.isnan(a[k]) and np.isnan(b[k])) for k in a)


def sklearn_values(maps, masks) -> dict[str, float]:
    s = np.concatenate([np.ravel(m) for m in maps]).astype(np.float64)
    y = np.concatenate([np.ravel(g) for g in masks]).astype(bool)
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore"):
        f1 = float(np.nanmax(2 * p * r / (p + r)))
    scores = [float(np.max(m)) for m in maps]
    labels = [bool(np.any(g)) for g in masks]
    return {
        "pixel_ap": average_precision_score(y, s),
        "pixel_f1_max": f1,
        "pixel_auroc": roc_auc_score(y, s),
        "pixel_aupro": pixel_aupro(maps, masks),
        "image_auroc": roc_auc_score(labels, scores),
        "image_ap": average_precision_score(labels, scores),
    }


def test_exact_mode_equals_sklearn(real_like):
    maps, masks = real_like
    got = run(maps, masks, exact=True).compute()
    for key, want in sklearn_values(maps, masks).items():
        assert abs(got[key] - want) <= 1e-9, key


def test_streaming_default_bins_within_1e4_of_exact(real_like):
    maps, masks = real_like
    want = run(maps, masks, exact=True).compute()
    metrics = run(maps, masks)
    got, bounds = metrics.compute(), metrics.error_bounds()
    for key in PIXEL:
        assert abs(got[key] - want[key]) <= 1e-4, key
        assert abs(got[key] - want[key]) <= bounds[key] + 1e-12, key
    for key in ("image_auroc", "image_ap", "image_f1_max", "n_images", "n_pixels", "n_positive_pixels"):
        assert got[key] == want[key], key
    assert got["n_pixels"] == 40 * 96 * 128
    assert got["n_defective_images"] == sum(bool(g.any()) for g in masks)


@pytest.mark.parametrize("bins", [4, 16, 64])
@pytest.mark.parametrize("seed", [0, 1])
def test_error_bounds_hold_with_coarse_bins(bins, seed):
    rng = np.random.default_rng(seed)
    masks = rng.random((5, 20, 20)) < 0.2
    maps = np.clip(rng.random((5, 20, 20)) * 0.8 + 0.25 * masks, 0, 1)
    want = run(maps, masks, exact=True).compute()
    metrics = run(maps, masks, bins=bins)
    got, bounds = metrics.compute(), metrics.error_bounds()
    for key in PIXEL:
        assert abs(got[key] - want[key]) <= bounds[key] + 1e-12, (key, got[key], want[key], bounds[key])
    assert got["pixel_f1_max"] <= want["pixel_f1_max"] + 1e-12  # F1-max can only be missed


def test_scores_on_the_bin_grid_are_exact():
    # Every bin holds one distinct score, so the histogram is the exact tie structure.
    rng = np.random.default_rng(2)
    maps = rng.integers(0, 256, (6, 15, 15)) / 256
    masks = rng.random((6, 15, 15)) < maps * 0.5
    got = run(maps, masks, bins=256).compute()
    want = sklearn_values(maps, masks)
    for key in PIXEL:
        assert got[key] == pytest.approx(want[key], abs=1e-12), key


def test_batching_does_not_change_results(real_like):
    maps, masks = real_like
    whole = run(maps, masks, batch=len(maps)).compute()
    assert run(maps, masks, batch=1).compute() == whole
    assert run(maps, masks, batch=7).compute() == whole


def test_stacked_lists_dtypes_and_other_score_range(real_like):
    maps, masks = real_like
    want = run(maps, masks).compute()
    stacked = run(np.stack(maps), np.stack(masks).astype(np.uint8)).compute()
    assert stacked == want
    shifted = run([m * 10 - 5 for m in maps], masks, score_range=(-5, 5)).compute()
    for key in PIXEL:
        assert shifted[key] == pytest.approx(want[key], abs=2e-4)
    half = run([m.astype(np.float16) for m in maps], masks).compute()
    assert half["pixel_ap"] == pytest.approx(want["pixel_ap"], abs=1e-3)


def test_images_of_different_sizes_and_given_image_scores():
    rng = np.random.default_rng(3)
    maps = [rng.random((h, w)) for h, w in [(10, 12), (7, 30), (16, 16)]]
    masks = [m > 0.8 for m in maps]
    masks[1][:] = False
    metrics = PixelMetrics(exact=True)
    metrics.update(maps, masks, image_scores=[0.3, 0.1, 0.2])
    got = metrics.compute()
    assert got["image_auroc"] == 1.0
    assert got["n_pixels"] == 120 + 210 + 256
    assert got["n_defective_images"] == 2
    want = sklearn_values(maps, masks)
    assert got["pixel_ap"] == pytest.approx(want["pixel_ap"], abs=1e-9)
    # Streaming on the grid of 2**18 bins: small, large, then small images again.
    grid = [np.floor(m * 2**18) / 2**18 for m in maps]
    streamed = PixelMetrics()
    streamed.update(grid, masks)
    exact = sklearn_values(grid, masks)
    for key in PIXEL:
        assert streamed.compute()[key] == pytest.approx(exact[key], abs=1e-12)
    labelled = PixelMetrics()
    labelled.update(maps, masks, image_scores=[0.3, 0.1, 0.2], image_labels=[0, 1, 0])
    assert labelled.compute()["image_auroc"] == 0.0


def test_errors_name_the_image_and_leave_no_trace():
    metrics = PixelMetrics()
    good = np.full((1, 4, 4), 0.5)
    mask = np.zeros((1, 4, 4), bool)
    mask[0, 0, 0] = True
    metrics.update(good, mask)
    before = metrics.compute()
    bad = np.concatenate([good, good * 3])
    with pytest.raises(UserError, match=r"image 'b.png'.*outside score_range \[0, 1\]"):
        metrics.update(bad, np.concatenate([mask, mask]), image_ids=["a.png", "b.png"])
    bad[1, 0, 0] = np.nan
    with pytest.raises(UserError, match=r"image #2: anomaly map contains NaN"):
        metrics.update(bad, np.concatenate([mask, mask]))
    with pytest.raises(UserError, match="mask shape"):
        metrics.update(good, np.zeros((1, 4, 5), bool), image_ids=["c.png"])
    with pytest.raises(UserError, match="image 'd.png': image_scores value is NaN"):
        metrics.update(good, mask, image_ids=["d.png"], image_scores=[np.nan])
    assert same(metrics.compute(), before)
    with pytest.raises(UserError, match="score_range"):
        PixelMetrics(score_range=(1.0, 1.0))


def test_undefined_metrics_and_reset():
    metrics = PixelMetrics()
    metrics.update(np.random.default_rng(4).random((2, 5, 5)), np.zeros((2, 5, 5), bool))
    with pytest.warns(UndefinedMetricWarning):
        got = metrics.compute()
    assert all(np.isnan(got[k]) for k in PIXEL + ("image_auroc", "image_ap", "image_f1_max"))
    assert got["n_positive_pixels"] == 0 and got["n_images"] == 2
    metrics.reset()
    with pytest.warns(UndefinedMetricWarning):
        assert metrics.compute()["n_images"] == 0


def test_all_positive_masks_in_streaming_mode():
    metrics = PixelMetrics()
    metrics.update(np.random.default_rng(5).random((2, 5, 5)), np.ones((2, 5, 5), bool))
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        got = metrics.compute()
    assert got["pixel_ap"] == 1.0 and got["pixel_f1_max"] == 1.0
    assert np.isnan(got["pixel_auroc"]) and np.isnan(got["pixel_aupro"])


@pytest.mark.parametrize("exact", [True, False])
def test_pr_curve_agrees_with_sklearn(real_like, exact):
    maps, masks = real_like
    metrics = run(maps, masks, exact=exact)
    precision, recall, thresholds = metrics.pr_curve(max_points=500)
    assert len(thresholds) <= 503 and len(precision) == len(recall) == len(thresholds) + 1
    assert np.all(np.diff(thresholds) > 0) and np.all(np.diff(recall) <= 0)
    assert (precision[-1], recall[-1]) == (1.0, 0.0)
    s = np.concatenate([m.ravel() for m in maps]).astype(np.float64)
    y = np.concatenate([g.ravel() for g in masks])
    for t, p, r in list(zip(thresholds, precision, recall))[::25]:
        predicted = s >= t
        tp = np.sum(predicted & y)
        assert r == pytest.approx(tp / y.sum(), abs=1e-12)
        assert p == pytest.approx(tp / predicted.sum(), abs=1e-12)
    f1 = 2 * precision * recall / (precision + recall)
    assert f1.max() == pytest.approx(metrics.compute()["pixel_f1_max"], abs=1e-12)


def test_exact_mode_across_computes_and_dtypes():
    # compute() sorts the held scores in place; later batches (here float64 after float32) are
    # appended and everything is sorted again.
    rng = np.random.default_rng(6)
    first = (rng.random((3, 20, 20)).astype(np.float32), rng.random((3, 20, 20)) < 0.2)
    second = (rng.random((2, 9, 31)), rng.random((2, 9, 31)) < 0.2)
    second[1][0] = False  # a normal image, so the image metrics are defined
    metrics = PixelMetrics(exact=True)
    metrics.update(*first)
    assert metrics.compute()["pixel_ap"] == pytest.approx(sklearn_values(*first)["pixel_ap"], abs=1e-9)
    metrics.update(*second)
    maps, masks = list(first[0]) + list(second[0]), list(first[1]) + list(second[1])
    got, want = metrics.compute(), sklearn_values(maps, masks)
    for key in want:
        assert got[key] == pytest.approx(want[key], abs=1e-9), key


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    seed=st.integers(0, 2**16),
    bins=st.integers(2, 300),
    levels=st.sampled_from([3, 50, 10**6]),
    positive_rate=st.floats(0.01, 0.9),
)
def test_property_streaming_within_its_error_bounds(seed, bins, levels, positive_rate):
    rng = np.random.default_rng(seed)
    masks = rng.random((3, 8, 9)) < positive_rate
    masks[0, 0, 0], masks[0, 0, 1] = True, False
    maps = np.floor(np.clip(rng.random((3, 8, 9)) + 0.3 * masks * rng.random(), 0, 0.999) * levels) / levels
    want = run(maps, masks, exact=True).compute()
    metrics = run(maps, masks, bins=bins)
    got, bounds = metrics.compute(), metrics.error_bounds()
    for key in PIXEL:
        assert abs(got[key] - want[key]) <= bounds[key] + 1e-12, key
