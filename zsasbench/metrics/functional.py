"""Exact metrics, equal to scikit-learn's (within floating-point rounding, far below 1e-9).

Instead of scikit-learn's argsort of every pooled pixel (8-byte indices plus float64 copies), the
exact curve is built from the distinct *positive* scores alone: for each distinct positive score u we
need the positives equal to u and the negatives equal to u, and for each gap between consecutive
distinct positive scores the number of negatives inside it. Thresholds inside a gap only add false
positives at constant recall, so merging them changes no metric (AP, F1-max, AUROC, AUPRO: a flat
run of the curve stays the same line). The negatives are sorted once (in place, float32 when the maps
are) and counted with two binary searches per distinct positive score.

All functions take `maps` and `masks` as a stacked (N, H, W) array or a sequence of (H, W) arrays whose
sizes may differ between images; masks are bool or 0/1. Pixels of all images are pooled.
"""
from __future__ import annotations

import warnings

import numpy as np

from zsasbench.metrics import curves
from zsasbench.metrics._inputs import check_finite, image_scores_and_labels, pairs
from zsasbench.metrics.aupro import region_weights
from zsasbench.metrics.curves import Counts, UndefinedMetricWarning


class ExactPixels:
    """Holds the scores of every pixel, split by label, and turns them into exact `Counts`.

    Negative scores go into one growing array (float32 unless a float64 map arrives) that is resized
    in place (realloc, which moves large blocks without copying), so holding N pixels costs about
    4N bytes and sorting them needs no second copy."""

    def __init__(self, with_regions: bool = True):
        self.with_regions = with_regions
        self.reset()

    def reset(self) -> None:
        self._pos: list[np.ndarray] = []
        self._pro: list[np.ndarray] = []
        self._neg = np.empty(0, np.float32)
        self._n_neg = 0
        self.n_regions = 0

    def add(self, m: np.ndarray, g: np.ndarray) -> None:
        """One checked map and its bool mask."""
        neg = m[~g]
        wider = np.result_type(neg, self._neg)
        if wider != self._neg.dtype:
            self._neg = self._neg.astype(wider)
        end = self._n_neg + len(neg)
        if end > len(self._neg):
            self._neg.resize(max(end, len(self._neg) * 5 // 4, 1 << 16), refcheck=False)
        self._neg[self._n_neg : end] = neg
        self._n_neg = end
        if g.any():
            self._pos.append(m[g])
            if self.with_regions:
                w, n = region_weights(g)
                self._pro.append(w)
                self.n_regions += n

    def counts(self) -> tuple[Counts, np.ndarray]:
        """Exact per-cell counts (cells: gap, u_0, gap, u_1, ..., u_{M-1}, gap) and the distinct
        positive scores u."""
        dtype = np.result_type(self._neg.dtype, *{a.dtype for a in self._pos})
        if dtype != self._neg.dtype:
            self._neg = self._neg.astype(dtype)
        neg = self._neg[: self._n_neg]
        neg.sort(kind="quicksort")  # in place; later additions are appended and sorted again
        pos = np.concatenate(self._pos).astype(dtype, copy=False) if self._pos else np.empty(0, dtype)
        u, inverse = np.unique(pos, return_inverse=True)
        pos_counts = np.bincount(inverse, minlength=len(u))
        if self.with_regions and self._pro:
            pro_sums = np.bincount(inverse, weights=np.concatenate(self._pro), minlength=len(u))
        else:
            pro_sums = np.zeros(len(u))
        lo = np.searchsorted(neg, u, side="left")
        hi = np.searchsorted(neg, u, side="right")
        del neg  # no view may outlive this call: add() resizes the array in place
        # Negatives below u_0, between u_{j-1} and u_j, and above u_{M-1}.
        gaps = np.concatenate([lo, [self._n_neg]]) - np.concatenate([[0], hi])
        n_cells = 2 * len(u) + 1
        cell_pos = np.zeros(n_cells, np.int64)
        cell_neg = np.empty(n_cells, np.int64)
        cell_pro = np.zeros(n_cells)
        cell_pos[1::2] = pos_counts
        cell_pro[1::2] = pro_sums
        cell_neg[0::2] = gaps
        cell_neg[1::2] = hi - lo
        return Counts(cell_pos, cell_neg, cell_pro, self.n_regions), u


def exact_counts(maps, masks, with_regions: bool = False) -> tuple[Counts, np.ndarray]:
    """Exact `Counts` of pooled pixels (see `ExactPixels.counts`)."""
    store = ExactPixels(with_regions)
    for name, m, g in pairs(maps, masks):
        check_finite(m.min(), m.max(), name)
        store.add(m, g)
    return store.counts()


def pixel_ap(maps, masks) -> float:
    """Average precision of pooled pixels, as sklearn.metrics.average_precision_score."""
    return curves.average_precision(exact_counts(maps, masks)[0])


def pixel_f1_max(maps, masks) -> float:
    """Highest F1 over every threshold of sklearn.metrics.precision_recall_curve (not a fixed grid)."""
    return curves.f1_max(exact_counts(maps, masks)[0])


def pixel_auroc(maps, masks) -> float:
    """Area under the ROC curve of pooled pixels, as sklearn.metrics.roc_auc_score."""
    return curves.auroc(exact_counts(maps, masks)[0])


def pixel_aupro(maps, masks, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve for FPR in [0, fpr_limit], divided by fpr_limit, as in
    the MVTec AD paper and its evaluation code (regions: 8-connected components of each mask)."""
    return curves.aupro(exact_counts(maps, masks, with_regions=True)[0], fpr_limit)


# Image level: one score per image (given, or the map's maximum), label = mask has a positive pixel.


def image_counts(scores: np.ndarray, labels: np.ndarray) -> Counts:
    """Exact `Counts` with one cell per distinct image score."""
    u, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=labels, minlength=len(u)).astype(np.int64)
    total = np.bincount(inverse, minlength=len(u))
    return Counts(pos, total - pos, np.zeros(len(u)), 0)


def _image_metric(scores_or_maps, labels, metric, name: str) -> float:
    scores, labels = image_scores_and_labels(scores_or_maps, labels)
    return image_metric(scores, labels, metric, name)


def image_metric(scores: np.ndarray, labels: np.ndarray, metric, name: str) -> float:
    """`metric` (a function of Counts) on image scores; NaN with a warning unless both classes occur."""
    n_pos = int(labels.sum())
    if n_pos == 0 or n_pos == len(labels):
        which = "no image" if len(labels) == 0 else "only normal images" if n_pos == 0 else "only defective images"
        warnings.warn(f"{name} is undefined ({which}); reported as NaN", UndefinedMetricWarning, stacklevel=3)
        return float("nan")
    return metric(image_counts(scores, labels))


def image_auroc(scores_or_maps, labels) -> float:
    """ROC AUC of image scores (1-D scores, or maps whose maximum is the score) against image labels
    (1-D 0/1, or masks: defective when any pixel is positive). NaN with a warning for one class."""
    return _image_metric(scores_or_maps, labels, curves.auroc, "image AUROC")


def image_ap(scores_or_maps, labels) -> float:
    """Average precision of image scores (see `image_auroc` for the inputs)."""
    return _image_metric(scores_or_maps, labels, curves.average_precision, "image AP")


def image_f1_max(scores_or_maps, labels) -> float:
    """Highest F1 over every threshold of the image scores (see `image_auroc` for the inputs)."""
    return _image_metric(scores_or_maps, labels, curves.f1_max, "image F1-max")


__all__ = [
    "pixel_ap",
    "pixel_f1_max",
    "pixel_auroc",
    "pixel_aupro",
    "image_auroc",
    "image_ap",
    "image_f1_max",
    "exact_counts",
    "ExactPixels",
]
