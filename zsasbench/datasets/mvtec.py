"""MVTec AD (Bergmann et al., CVPR 2019): 15 categories in the MVTec AD layout."""
from __future__ import annotations

from .base import CategoryCounts
from .mvtec_layout import MVTecLayoutDataset, TreeSpec, mvtec_layout_text

# (normal test, defective test, train/good) per category of the official release: 1,725 test images.
_COUNTS = {
    "bottle": (20, 63, 209), "cable": (58, 92, 224), "capsule": (23, 109, 219), "carpet": (28, 89, 280),
    "grid": (21, 57, 264), "hazelnut": (40, 70, 391), "leather": (32, 92, 245), "metal_nut": (22, 93, 220),
    "pill": (26, 141, 267), "screw": (41, 119, 320), "tile": (33, 84, 230), "toothbrush": (12, 30, 60),
    "transistor": (60, 40, 213), "wood": (19, 60, 247), "zipper": (32, 119, 240),
}


class MVTecAD(MVTecLayoutDataset):
    """MVTec AD. Test set: <cat>/test/*; references: <cat>/train/good (never tested).
    Masks: ground_truth/<defect>/<stem>_mask.png. Object names: the category with spaces."""

    name = "mvtec"
    kind = "object"
    description = "MVTec AD: 15 object and texture categories, 1,725 test images"
    layout = mvtec_layout_text()
    source = "https://www.mvtec.com/company/research/datasets/mvtec-ad (MVTec AD, free for non-commercial use)"
    official_counts = {c: CategoryCounts(*v) for c, v in _COUNTS.items()}
    spec = TreeSpec(mask_suffixes=("_mask",))
