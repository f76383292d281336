"""MPDD, the Metal Parts Defect Detection dataset (Jezek et al., 2021), in the MVTec AD layout."""
from __future__ import annotations

from .base import CategoryCounts
from .mvtec_layout import MVTecLayoutDataset, TreeSpec, mvtec_layout_text

# (normal test, defective test, train/good) per category as published with the dataset (1,346 images).
_COUNTS = {
    "bracket_black": (32, 47, 289), "bracket_brown": (26, 51, 185), "bracket_white": (30, 30, 110),
    "connector": (30, 14, 128), "metal_plate": (26, 71, 54), "tubes": (32, 69, 122),
}


class MPDD(MVTecLayoutDataset):
    """MPDD: six metal-part categories. Same layout and split as MVTec AD."""

    name = "mpdd"
    kind = "object"
    description = "MPDD: 6 categories of painted metal parts"
    layout = mvtec_layout_text()
    source = "https://github.com/stepanje/MPDD (Jezek et al., ICUMT 2021)"
    official_counts = {c: CategoryCounts(*v) for c, v in _COUNTS.items()}
    spec = TreeSpec(mask_suffixes=("_mask",))
    object_names = {
        "bracket_black": "black metal bracket", "bracket_brown": "brown metal bracket",
        "bracket_white": "white metal bracket", "connector": "metal connector",
        "metal_plate": "metal plate", "tubes": "metal tube",
    }
