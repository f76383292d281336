"""zsasbench: a benchmark harness for zero-shot anomaly segmentation."""

__version__ = "0.1.0"
