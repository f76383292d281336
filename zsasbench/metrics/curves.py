"""Every pixel metric computed from one representation: counts per tie group ("cells").

A cell is a set of pixels that share one threshold: all of them are predicted anomalous together or
not at all. In exact mode a cell is one distinct score value (or a run of negatives between two
distinct positive values, which changes no metric: see `functional.exact_counts`); in streaming mode
a cell is one histogram bin. Cells are ordered by ascending score. Treating a cell as a single
threshold is exactly how scikit-learn treats tied scores, so the metrics below equal scikit-learn's
whenever every cell holds a single distinct score, and otherwise differ only by the bounds given in
`error_bounds`.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np


class UndefinedMetricWarning(UserWarning):
    """A metric is undefined for the data (for example no positive pixel); it is reported as NaN."""


@dataclass
class Counts:
    """Per-cell counts, ascending by score.

    pos: positive (anomalous) pixels per cell; neg: negative pixels per cell; pro: per cell, the sum
    over its positive pixels of 1 / (size of the pixel's connected defect region), so that the sum of
    `pro` over the cells at or above a threshold, divided by `n_regions`, is the mean per-region overlap
    (PRO) at that threshold.
    """

    pos: np.ndarray
    neg: np.ndarray
    pro: np.ndarray
    n_regions: int

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())


def _undefined(metric: str, why: str) -> float:
    warnings.warn(f"{metric} is undefined ({why}); reported as NaN", UndefinedMetricWarning, stacklevel=3)
    return float("nan")


def _descending(c: Counts) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Per cell, from the highest threshold down: positives in the cell, and true/false positives and
    the PRO weight sum at or above the cell's threshold."""
    pos = c.pos[::-1].astype(np.float64)
    tp = np.cumsum(pos)
    fp = np.cumsum(c.neg[::-1], dtype=np.float64)
    pro = np.cumsum(c.pro[::-1], dtype=np.float64)
    return pos, tp, fp, pro


def average_precision(c: Counts) -> float:
    """sklearn.metrics.average_precision_score: sum over thresholds of (R_k - R_{k-1}) * P_k."""
    n_pos = c.n_pos
    if n_pos == 0:
        return _undefined("pixel AP", "no positive pixel")
    pos, tp, fp, _ = _descending(c)
    hit = pos > 0  # only thresholds where recall changes contribute
    return float(np.sum(pos[hit] * (tp[hit] / (tp[hit] + fp[hit]))) / n_pos)


def f1_max(c: Counts) -> float:
    """Highest F1 = 2 TP / (TP + FP + P) over every threshold of the precision-recall curve."""
    n_pos = c.n_pos
    if n_pos == 0:
        return _undefined("pixel F1-max", "no positive pixel")
    _, tp, fp, _ = _descending(c)
    return float(np.max(2.0 * tp / (tp + fp + n_pos)))


def auroc(c: Counts) -> float:
    """sklearn.metrics.roc_auc_score, as the Mann-Whitney statistic with ties counted one half (equal to
    the trapezoidal area under the ROC curve through every distinct threshold)."""
    n_pos, n_neg = c.n_pos, c.n_neg
    if n_pos == 0 or n_neg == 0:
        return _undefined("pixel AUROC", "no positive pixel" if n_pos == 0 else "no negative pixel")
    neg = c.neg.astype(np.float64)
    below = np.cumsum(neg) - neg  # negatives strictly below each cell
    return float(np.sum(c.pos * (below + 0.5 * neg)) / n_pos / n_neg)


def pro_curve(c: Counts) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, PRO) from the highest threshold down, starting at (0, 0) and ending at (1, 1)."""
    _, _, fp, pro = _descending(c)
    fpr = np.concatenate([[0.0], fp / c.n_neg])
    pro = np.concatenate([[0.0], pro / c.n_regions])
    return np.clip(fpr, 0.0, 1.0), np.clip(pro, 0.0, 1.0)


def area_to_limit(x: np.ndarray, y: np.ndarray, limit: float) -> float:
    """Trapezoidal area under the piecewise-linear curve (x non-decreasing) from x[0] to `limit`,
    interpolating linearly at the limit (as the MVTec AD evaluation code does)."""
    k = int(np.searchsorted(x, limit, side="right"))  # x[:k] <= limit
    area = float(np.sum((x[1:k] - x[: k - 1]) * (y[1:k] + y[: k - 1]) / 2.0))
    if 0 < k < len(x) and x[k - 1] < limit:
        y_lim = y[k - 1] + (y[k] - y[k - 1]) * (limit - x[k - 1]) / (x[k] - x[k - 1])
        area += float((limit - x[k - 1]) * (y[k - 1] + y_lim) / 2.0)
    return area


def aupro(c: Counts, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to `fpr_limit`, divided by `fpr_limit` (MVTec AD
    paper: Bergmann et al., IJCV 2021): 1.0 is perfect, a random score gives about fpr_limit / 2."""
    if not 0.0 < fpr_limit <= 1.0:
        raise ValueError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
    if c.n_regions == 0 or c.n_neg == 0:
        return _undefined("pixel AUPRO", "no defect region" if c.n_regions == 0 else "no negative pixel")
    fpr, pro = pro_curve(c)
    return float(area_to_limit(fpr, pro, fpr_limit) / fpr_limit)


def pr_curve(c: Counts, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(precision, recall, cell index) in scikit-learn's order: thresholds ascending, precision and
    recall one element longer, ending at (1, 0). Only cells where recall changes are kept, thinned to
    at most `max_points` evenly spread in recall (plus the cell of the F1 maximum)."""
    n_pos = c.n_pos
    if n_pos == 0:
        empty = np.empty(0)
        return np.array([1.0]), np.array([0.0]), empty.astype(np.int64)
    pos, tp, fp, _ = _descending(c)
    keep = np.flatnonzero(pos > 0)  # descending cells where recall grows
    if len(keep) > max_points:
        targets = np.linspace(0, n_pos, max_points)
        chosen = np.searchsorted(tp[keep], targets, side="left").clip(0, len(keep) - 1)
        best = np.argmax((2.0 * tp / (tp + fp + n_pos))[keep])
        keep = keep[np.unique(np.concatenate([chosen, [best, len(keep) - 1]]))]
    precision = tp[keep] / (tp[keep] + fp[keep])
    recall = tp[keep] / n_pos
    cell = len(c.pos) - 1 - keep  # back to ascending cell indices
    return (
        np.concatenate([precision[::-1], [1.0]]),
        np.concatenate([recall[::-1], [0.0]]),
        cell[::-1],
    )


def error_bounds(c: Counts, fpr_limit: float = 0.3) -> dict[str, float]:
    """Worst-case |metric(cells) - metric(exact scores)| when each cell may hold many distinct scores.

    Derivation (a cell with p positives and n negatives, T positives and F negatives above it, and
    c = T + F + p + n pixels at or above its lower edge):
    - AP: a positive inside the cell has exact precision (T+i)/(T+F+k) with 1 <= i <= p and
      i <= k <= i + n, which lies between (T+1)/(T+F+n+1) (negatives first) and (T+p)/(T+F+p)
      (positives first); the cell gives (T+p)/c for each of its p positives. Hence |dAP| <= sum over
      cells of p * (largest distance from (T+p)/c to those two ends) / P.
    - F1-max: a threshold inside the cell has F1 <= 2(T+p)/(T+F+p+P); the cell (one-sidedly lower)
      value can be below the exact maximum by at most max over cells of that bound minus the value.
    - AUROC: only pairs (positive, negative) in one cell are scored 1/2 instead of 0 or 1:
      |dAUROC| <= sum of p n / (2 P N).
    - AUPRO: FPR and PRO are monotone, so inside a cell the exact curve stays in the box spanned by
      the cell's end points and differs from the chord by at most half the box's area (the whole
      clipped box for the cell that straddles the limit); divided by the limit.
    A cell holding a single distinct score has no error, so these are loose on heavily tied maps.
    """
    n_pos, n_neg = c.n_pos, c.n_neg
    if n_pos == 0:
        nan = float("nan")
        return {"pixel_ap": nan, "pixel_f1_max": nan, "pixel_auroc": nan, "pixel_aupro": nan}
    pos, tp, fp, _ = _descending(c)
    neg = c.neg[::-1].astype(np.float64)
    above = tp + fp
    hit = pos > 0
    # Exact precision inside a cell lies in [(T+1)/(T+F+n+1), (T+p)/(T+F+p)] (positives last / first).
    p, n, t, f = pos[hit], neg[hit], (tp - pos)[hit], (fp - neg)[hit]
    merged = (t + p) / (t + f + p + n)
    worst = np.maximum((t + p) / (t + f + p) - merged, merged - (t + 1) / (t + f + n + 1))
    ap = float(np.sum(p * worst) / n_pos)
    f1 = 2.0 * tp / (above + n_pos)
    f1_upper = np.where(hit, 2.0 * tp / (above - neg + n_pos), f1)
    f1_err = float(np.max(f1_upper) - np.max(f1))
    out = {"pixel_ap": ap, "pixel_f1_max": f1_err}
    if n_neg == 0:
        out.update(pixel_auroc=float("nan"), pixel_aupro=float("nan"))
        return out
    out["pixel_auroc"] = float(np.sum(c.pos * c.neg.astype(np.float64)) / (2.0 * n_pos * n_neg))
    if c.n_regions == 0:
        out["pixel_aupro"] = float("nan")
        return out
    fpr, pro = pro_curve(c)
    x0, x1 = fpr[:-1], np.minimum(fpr[1:], fpr_limit)
    width = np.clip(x1 - x0, 0.0, None)
    box = width * (pro[1:] - pro[:-1])
    straddles = (fpr[:-1] < fpr_limit) & (fpr[1:] > fpr_limit)
    out["pixel_aupro"] = float(np.sum(np.where(straddles, box, box / 2.0)) / fpr_limit)
    return out
