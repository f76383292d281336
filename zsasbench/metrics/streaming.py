"""`PixelMetrics`: a streaming accumulator for every pixel and image metric of a category.

Streaming mode (the default) keeps histograms over `score_range`: positive and negative pixels per
bin, plus per bin the PRO weight sum of the positives (see `aupro.region_weights`). Every metric is
computed with each bin as one threshold, which is exactly how scikit-learn treats tied scores
(`curves`), so the only error comes from merging *distinct* scores that fall into one bin. Memory is
fixed by `bins` (three arrays of `bins` numbers and a scratch array as large as the largest image)
plus one float per image, whatever the number of pixels.

Accuracy, measured against exact values (`python benchmarks/metrics.py --accuracy`, docs/performance.md):
the AP error shrinks about as 1/bins (3e-4 at 2**12 bins, 4e-6 at the default 2**18 on real-like
maps, 2e-6 on tie-free uniform noise); AUROC and AUPRO errors are smaller still; F1-max can only be
missed, by at most a few pixels' worth (6e-6 on uniform noise at 2**18, 0 on real-like maps). So the
default is within 1e-5 of exact on every metric, ten times inside the 1e-4 requirement.
`error_bounds()` gives a guaranteed worst-case bound computed from the histogram itself; it assumes
the worst order inside each bin, so it is loose where bins hold tied scores (real-like maps: ~8e-4
for AP whatever the bin count, while the actual error is 4e-6).

More bins cost little: 2**18 bins (2 MB per histogram) stay in the CPU cache; at 2**20 and above the
per-image counting slows by about 2x and compute() takes longer.

`exact=True` keeps every pixel score instead (as float32 when the maps are float32) and reproduces
scikit-learn within floating-point rounding; memory then grows with the pixel count.
"""
from __future__ import annotations

import numpy as np

from zsasbench.errors import UserError
from zsasbench.metrics import curves
from zsasbench.metrics._inputs import check_finite, check_ids, pairs
from zsasbench.metrics.aupro import region_weights
from zsasbench.metrics.curves import Counts
from zsasbench.metrics.functional import ExactPixels, image_metric

DEFAULT_BINS = 2**18


def _accumulate(total: np.ndarray, counts: np.ndarray) -> None:
    """Add a bincount (as long as the largest index present) into a histogram."""
    total[: len(counts)] += counts


class PixelMetrics:
    """Accumulate anomaly maps and masks batch by batch; `compute()` gives every metric.

    >>> metrics = PixelMetrics()
    >>> for maps, masks in batches:          # maps in score_range, masks bool or 0/1, same shapes
    ...     metrics.update(maps, masks)
    >>> metrics.compute()["pixel_ap"]

    bins: histogram bins over `score_range` (streaming mode); the error of AP falls about as 1/bins
        (4e-6 at the default 2**18); above about 2**19 the histogram leaves the CPU cache.
    exact: keep every pixel and reproduce scikit-learn exactly (memory grows with pixels).
    fpr_limit: integration limit of AUPRO.
    score_range: the (low, high) range of map values in streaming mode; a value outside it is an
        error naming the image (the runner min-max normalises maps to [0, 1] first).
    """

    def __init__(
        self,
        bins: int = DEFAULT_BINS,
        exact: bool = False,
        fpr_limit: float = 0.3,
        score_range: tuple[float, float] = (0.0, 1.0),
    ):
        lo, hi = (float(v) for v in score_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and lo < hi):
            raise UserError(f"score_range must be two finite numbers low < high, got {score_range}")
        if int(bins) < 2:
            raise UserError(f"bins must be at least 2, got {bins}")
        if not 0.0 < fpr_limit <= 1.0:
            raise UserError(f"fpr_limit must be in (0, 1], got {fpr_limit}")
        self.bins, self.exact, self.fpr_limit, self.score_range = int(bins), bool(exact), fpr_limit, (lo, hi)
        # Bin i holds scores s with floor((s - lo) * scale) == i (s == hi goes to the last bin).
        self._scale = self.bins / (hi - lo)
        self.reset()

    def reset(self) -> None:
        """Forget everything accumulated."""
        self._images: list[float] = []
        self._labels: list[bool] = []
        self.n_pixels = 0
        if self.exact:
            self._exact = ExactPixels(with_regions=True)
            return
        self._total = np.zeros(self.bins, np.int64)
        self._pos = np.zeros(self.bins, np.int64)
        self._pro = np.zeros(self.bins)
        self._n_regions = 0
        self._scratch = np.empty(0, np.intp)

    # -- accumulation ---------------------------------------------------------------------------

    def update(self, maps, masks, image_ids=None, image_scores=None, image_labels=None) -> None:
        """Add a batch: maps and masks as a stacked (N, H, W) array or sequences of (H, W) arrays.

        image_ids: names used in error messages (default: running image index).
        image_scores: image-level scores (default: each map's maximum).
        image_labels: image-level 0/1 labels (default: whether the mask has a positive pixel).
        The whole batch is checked before anything is added, so a rejected batch leaves no trace.
        """
        checked = []
        lo, hi = self.score_range
        for name, m, g in pairs(maps, masks, image_ids, offset=len(self._images)):
            mn, mx = m.min(), m.max()
            check_finite(mn, mx, name)
            if not self.exact and (mn < lo or mx > hi):
                raise UserError(
                    f"{name}: anomaly map values [{mn:.6g}, {mx:.6g}] fall outside score_range "
                    f"[{lo:g}, {hi:g}] (normalise maps first, or pass a wider score_range)"
                )
            checked.append((m, g, float(mx)))
        scores = self._batch_values(image_scores, [mx for _, _, mx in checked], "image_scores", image_ids)
        labels = self._batch_values(image_labels, [bool(g.any()) for _, g, _ in checked], "image_labels", image_ids)
        if not np.all(np.isin(labels, (0, 1))):
            raise UserError("image_labels must be bool or 0/1")
        for m, g, mx in checked:
            self.n_pixels += m.size
            if self.exact:
                self._exact.add(m, g)
            else:
                self._add(m, g, mx)
        self._images.extend(float(s) for s in scores)
        self._labels.extend(bool(v) for v in labels)

    def _batch_values(self, given, default, what: str, ids) -> np.ndarray:
        if given is None:
            return np.asarray(default)
        values = np.asarray(given, dtype=np.float64).reshape(-1)
        if len(values) != len(default):
            raise UserError(f"got {len(values)} {what} for {len(default)} anomaly maps")
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            ids = check_ids(ids, len(default))
            name = f"image {ids[bad[0]]!r}" if ids else f"image #{len(self._images) + int(bad[0])}"
            raise UserError(f"{name}: {what} value is NaN or infinite")
        return values

    def _add(self, m: np.ndarray, g: np.ndarray, mx: float) -> None:
        """Count one checked map's pixels into the histograms."""
        idx = self._quantise(m, mx)
        _accumulate(self._total, np.bincount(idx))
        if g.any():
            w, n = region_weights(g)
            self._n_regions += n
            pos_idx = idx[g.ravel()]
            _accumulate(self._pos, np.bincount(pos_idx))
            _accumulate(self._pro, np.bincount(pos_idx, weights=w))

    def _quantise(self, m: np.ndarray, mx: float) -> np.ndarray:
        """Bin index of every pixel, in a scratch array reused between images. Arithmetic is in the
        map's precision, cast to integers by truncation (a floor, as values are >= low); any rounding
        is monotone, so pixels keep their order and ties stay tied."""
        if len(self._scratch) < m.size:
            self._scratch = np.empty(m.size, np.intp)
        out = self._scratch[: m.size]
        lo, flat = self.score_range[0], m.ravel()
        scale = flat.dtype.type(self._scale)
        if lo == 0.0:
            np.multiply(flat, scale, out=out, casting="unsafe")
        else:
            np.multiply(flat - flat.dtype.type(lo), scale, out=out, casting="unsafe")
        if (mx - lo) * self._scale >= self.bins - 1:  # the top value (and rounding near it)
            np.minimum(out, self.bins - 1, out=out)
        return out

    # -- results --------------------------------------------------------------------------------

    def counts(self) -> Counts:
        """The per-cell counts behind every pixel metric: non-empty bins (an empty bin is no
        threshold), or distinct scores in exact mode."""
        return self._cells()[0]

    def _cells(self) -> tuple[Counts, np.ndarray]:
        """Counts and, per cell, its threshold (bin lower edge, or distinct score in exact mode)."""
        if self.exact:
            c, u = self._exact.counts()
            # Cells alternate gap, u_0, gap, u_1, ...; gaps hold no positive, so get no threshold.
            return c, np.repeat(np.concatenate([[np.nan], u.astype(np.float64)]), 2)[1:]
        used = np.flatnonzero(self._total)
        pos = self._pos[used]
        c = Counts(pos, self._total[used] - pos, self._pro[used], self._n_regions)
        return c, self.score_range[0] + used / self._scale

    def compute(self) -> dict[str, float]:
        """Every metric: pixel_ap, pixel_f1_max, pixel_auroc, pixel_aupro, image_auroc, image_ap,
        image_f1_max (NaN with an UndefinedMetricWarning when undefined) and the counts n_images,
        n_pixels, n_positive_pixels, n_defective_images."""
        c = self.counts()
        scores, labels = np.asarray(self._images), np.asarray(self._labels, bool)
        return {
            "pixel_ap": curves.average_precision(c),
            "pixel_f1_max": curves.f1_max(c),
            "pixel_auroc": curves.auroc(c),
            "pixel_aupro": curves.aupro(c, self.fpr_limit),
            "image_auroc": image_metric(scores, labels, curves.auroc, "image AUROC"),
            "image_ap": image_metric(scores, labels, curves.average_precision, "image AP"),
            "image_f1_max": image_metric(scores, labels, curves.f1_max, "image F1-max"),
            "n_images": len(self._images),
            "n_pixels": self.n_pixels,
            "n_positive_pixels": c.n_pos,
            "n_defective_images": int(labels.sum()),
        }

    def error_bounds(self) -> dict[str, float]:
        """Guaranteed worst-case |streaming - exact| per pixel metric (0 in exact mode); see
        `curves.error_bounds`."""
        if self.exact:
            return {"pixel_ap": 0.0, "pixel_f1_max": 0.0, "pixel_auroc": 0.0, "pixel_aupro": 0.0}
        return curves.error_bounds(self.counts(), self.fpr_limit)

    def pr_curve(self, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(precision, recall, thresholds) for plotting, in scikit-learn's layout (thresholds
        ascending; precision and recall one longer, ending at precision 1, recall 0), at most about
        `max_points` points. Thresholds are bin lower edges (distinct scores in exact mode)."""
        c, thresholds = self._cells()
        precision, recall, cell = curves.pr_curve(c, max_points)
        return precision, recall, thresholds[cell]
