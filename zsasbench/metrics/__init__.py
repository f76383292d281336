"""Metric engine: exact pixel/image metrics equal to scikit-learn's, and a streaming accumulator.

Functions (exact, pooled over all pixels of the given images):
    pixel_ap, pixel_f1_max, pixel_auroc, pixel_aupro, image_auroc, image_ap, image_f1_max
Accumulator (constant memory in streaming mode, or exact=True):
    PixelMetrics(bins=2**18, exact=False, fpr_limit=0.3, score_range=(0.0, 1.0))
Undefined metrics (no positive pixel, one image class) are NaN with an UndefinedMetricWarning.
"""
from zsasbench.metrics.curves import UndefinedMetricWarning
from zsasbench.metrics.functional import (
    image_ap,
    image_auroc,
    image_f1_max,
    pixel_ap,
    pixel_aupro,
    pixel_auroc,
    pixel_f1_max,
)
from zsasbench.metrics.streaming import DEFAULT_BINS, PixelMetrics

__all__ = [
    "DEFAULT_BINS",
    "PixelMetrics",
    "UndefinedMetricWarning",
    "image_ap",
    "image_auroc",
    "image_f1_max",
    "pixel_ap",
    "pixel_aupro",
    "pixel_auroc",
    "pixel_f1_max",
]
