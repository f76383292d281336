"""Exact metric functions against scikit-learn on random, structured and adversarial data."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from zsasbench.errors import UserError
from zsasbench.metrics import (
    UndefinedMetricWarning,
    image_ap,
    image_auroc,
    image_f1_max,
    pixel_ap,
    pixel_aupro,
    pixel_auroc,
    pixel_f1_max,
)
from zsasbench.metrics.synthetic import realistic_maps

TOL = 1e-9


def sk_f1_max(y, s) -> float:
    p, r, _ = precision_recall_curve(y, s)
    with np.errstate(invalid="ignore", divide="ignore"):
        return float(np.nanmax(2 * p * r / (p + r)))


def sk_pixel(maps, masks) -> dict[str, float]:
    s = np.concatenate([np.asarray(m, np.float64).ravel() for m in maps])
    y = np.concatenate([np.asarray(g).ravel() for g in masks]).astype(bool)
    return {"ap": average_precision_score(y, s), "f1": sk_f1_max(y, s), "auroc": roc_auc_score(y, s)}


def ours(maps, masks) -> dict[str, float]:
    return {"ap": pixel_ap(maps, masks), "f1": pixel_f1_max(maps, masks), "auroc": pixel_auroc(maps, masks)}


def assert_matches_sklearn(maps, masks):
    want, got = sk_pixel(maps, masks), ours(maps, masks)
    for k in want:
        assert abs(got[k] - want[k]) <= TOL, (k, got[k], want[k])


def random_case(rng, n=6, shape=(17, 23), levels=None, p=0.1):
    maps = rng.random((n, *shape))
    if levels:
        maps = np.floor(maps * levels) / levels
    masks = rng.random((n, *shape)) < p
    masks[0, 0, 0] = True
    masks[0, 0, 1] = False
    return maps, masks


def test_random_continuous_scores():
    assert_matches_sklearn(*random_case(np.random.default_rng(0)))


def test_heavy_ties_within_and_across_images():
    # 5 score levels for ~2,400 pixels: every threshold is shared by many pixels in many images.
    assert_matches_sklearn(*random_case(np.random.default_rng(1), levels=5, p=0.3))


def test_structured_real_like_maps():
    maps, masks = realistic_maps(12, (48, 64), seed=2)
    assert_matches_sklearn(maps, masks)


def test_images_of_different_sizes_and_dtypes():
    rng = np.random.default_rng(3)
    maps = [rng.random((10, 12)).astype(np.float32), rng.random((31, 7)), rng.integers(0, 4, (5, 5))]
    maps.append(rng.random((9, 9)).astype(np.float16))
    masks = [rng.random(m.shape) < 0.3 for m in maps]
    assert_matches_sklearn(maps, masks)


def test_adversarial_orderings():
    # Perfect, inverted, single positive pixel at the top / the bottom, positives tied with negatives.
    base = np.arange(40, dtype=np.float64).reshape(1, 5, 8) / 40
    mask = base >= 0.75
    assert pixel_ap(base, mask) == pytest.approx(1.0, abs=TOL)
    assert pixel_f1_max(base, mask) == pytest.approx(1.0, abs=TOL)
    assert pixel_auroc(base, mask) == pytest.approx(1.0, abs=TOL)
    assert_matches_sklearn(1 - base, mask)
    for pos in [(0, 0, 0), (0, 4, 7)]:
        single = np.zeros_like(mask)
        single[pos] = True
        assert_matches_sklearn(base, single)
    tied = np.where(mask, 0.5, base)
    tied[0, 0, :4] = 0.5
    assert_matches_sklearn(tied, mask)


def test_constant_maps_give_prevalence():
    masks = np.zeros((3, 6, 6), bool)
    masks[1, 2:4, 2:4] = True
    maps = np.full(masks.shape, 0.25)
    prevalence = masks.mean()
    assert pixel_ap(maps, masks) == pytest.approx(prevalence, abs=TOL)
    assert pixel_auroc(maps, masks) == pytest.approx(0.5, abs=TOL)
    assert_matches_sklearn(maps, masks)


def test_masks_as_uint8_int_and_float_zero_one():
    maps, masks = random_case(np.random.default_rng(4))
    want = ours(maps, masks)
    for dtype in (np.uint8, np.int64, np.float32):
        assert ours(maps, masks.astype(dtype)) == want
    assert ours(list(maps), list(masks)) == want


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    data=st.lists(
        st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4
    ).flatmap(
        lambda shapes: st.tuples(
            st.just(shapes),
            st.lists(st.integers(0, 7), min_size=sum(h * w for h, w in shapes), max_size=sum(h * w for h, w in shapes)),
            st.lists(st.booleans(), min_size=sum(h * w for h, w in shapes), max_size=sum(h * w for h, w in shapes)),
        )
    )
)
def test_property_equal_to_sklearn(data):
    shapes, values, labels = data
    labels = list(labels)
    if not any(labels) or all(labels):
        labels[0] = not labels[0]
    if not any(labels) or all(labels):
        return  # a single pixel cannot hold both classes
    values = np.array(values, np.float64) / 7
    labels = np.array(labels)
    maps, masks, start = [], [], 0
    for h, w in shapes:
        maps.append(values[start : start + h * w].reshape(h, w))
        masks.append(labels[start : start + h * w].reshape(h, w))
        start += h * w
    assert_matches_sklearn(maps, masks)


# -- undefined cases and errors ------------------------------------------------------------------


@pytest.mark.parametrize("fn", [pixel_ap, pixel_f1_max, pixel_auroc, pixel_aupro])
def test_no_positive_pixel_is_nan_with_warning(fn):
    maps = np.random.default_rng(5).random((2, 4, 4))
    with pytest.warns(UndefinedMetricWarning, match="no (positive pixel|defect region)"):
        assert np.isnan(fn(maps, np.zeros((2, 4, 4), bool)))


def test_all_positive_masks():
    maps = np.random.default_rng(6).random((2, 4, 4))
    masks = np.ones((2, 4, 4), bool)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert pixel_ap(maps, masks) == pytest.approx(average_precision_score(masks.ravel(), maps.ravel()))
        assert pixel_ap(maps, masks) == 1.0
        assert pixel_f1_max(maps, masks) == 1.0
    for fn in (pixel_auroc, pixel_aupro):
        with pytest.warns(UndefinedMetricWarning, match="no negative pixel"):
            assert np.isnan(fn(maps, masks))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_map_names_the_image(bad):
    maps = np.random.default_rng(7).random((3, 4, 4))
    maps[2, 1, 1] = bad
    masks = maps > 0.5
    with pytest.raises(UserError, match=r"image #2.*NaN or infinite"):
        pixel_ap(maps, masks)


def test_shape_mismatch_is_an_error():
    with pytest.raises(UserError, match=r"image #1: mask shape \(4, 5\) differs .* \(5, 4\)"):
        pixel_ap([np.zeros((3, 3)), np.zeros((5, 4))], [np.zeros((3, 3), bool), np.zeros((4, 5), bool)])
    with pytest.raises(UserError, match="2 anomaly maps but 1 masks"):
        pixel_ap([np.zeros((3, 3))] * 2, [np.zeros((3, 3), bool)])
    with pytest.raises(UserError, match="must be 2-D"):
        pixel_ap([np.zeros((1, 3, 3))], [np.zeros((1, 3, 3), bool)])


def test_non_binary_mask_is_an_error():
    mask = np.zeros((3, 3))
    mask[1, 1] = 0.5
    with pytest.raises(UserError, match="image #0: mask values must be bool or 0/1"):
        pixel_ap(np.zeros((1, 3, 3)), mask[None])
    with pytest.raises(UserError, match="mask values"):
        pixel_ap(np.zeros((1, 3, 3)), np.full((1, 3, 3), 255, np.uint8))


# -- image level -----------------------------------------------------------------------------------


def test_image_metrics_match_sklearn_from_maps_and_scores():
    rng = np.random.default_rng(8)
    maps, masks = realistic_maps(30, (16, 16), seed=8)
    scores = np.array([m.max() for m in maps], np.float64)
    labels = np.array([g.any() for g in masks])
    assert 0 < labels.sum() < len(labels)
    assert image_auroc(maps, masks) == pytest.approx(roc_auc_score(labels, scores), abs=TOL)
    assert image_ap(maps, labels) == pytest.approx(average_precision_score(labels, scores), abs=TOL)
    assert image_f1_max(scores, labels) == pytest.approx(sk_f1_max(labels, scores), abs=TOL)
    tied = np.round(rng.random(50) * 3)  # heavy ties among image scores
    y = rng.random(50) < 0.5
    assert image_ap(tied, y) == pytest.approx(average_precision_score(y, tied), abs=TOL)
    assert image_auroc(list(tied), list(y)) == pytest.approx(roc_auc_score(y, tied), abs=TOL)
    assert image_f1_max(tied, y.astype(int)) == pytest.approx(sk_f1_max(y, tied), abs=TOL)


@pytest.mark.parametrize("fn", [image_auroc, image_ap, image_f1_max])
@pytest.mark.parametrize("label", [0, 1])
def test_image_metrics_with_one_class_are_nan(fn, label):
    with pytest.warns(UndefinedMetricWarning, match="only"):
        assert np.isnan(fn([0.1, 0.5, 0.9], [label] * 3))


def test_image_metric_input_errors():
    with pytest.raises(UserError, match="3 image scores but 2 labels"):
        image_auroc([0.1, 0.2, 0.3], [0, 1])
    with pytest.raises(UserError, match="image #1: image score is NaN"):
        image_auroc([0.1, np.nan, 0.3], [0, 1, 1])
    with pytest.raises(UserError, match="labels must be bool or 0/1"):
        image_auroc([0.1, 0.2, 0.3], [0, 2, 1])
