"""DTD-Synthetic (Aota et al., WACV 2023): 12 DTD textures with synthetic defects, MVTec AD layout."""
from __future__ import annotations

from .mvtec_layout import MVTecLayoutDataset, TreeSpec, mvtec_layout_text

CATEGORIES = ("Blotchy_099", "Fibrous_183", "Marbled_078", "Matted_069", "Mesh_114", "Perforated_037",
              "Stratified_154", "Woven_001", "Woven_068", "Woven_104", "Woven_125", "Woven_127")


class DTDSynthetic(MVTecLayoutDataset):
    """DTD-Synthetic. Test: <cat>/test/<good|bad>; references: <cat>/train/good. Masks in
    ground_truth/bad/ (stem with or without `_mask`). Object name: "<adjective> texture"."""

    name = "dtd-synthetic"
    kind = "texture"
    description = "DTD-Synthetic: 12 textures with synthetic defects"
    layout = mvtec_layout_text()
    source = ("released with Aota, Tong, Okatani, \"Zero-shot versus many-shot: unsupervised texture "
              "anomaly detection\", WACV 2023 (download link in the paper's code repository)")
    official_counts = {}  # per-category counts not verified here: no count warnings
    spec = TreeSpec(mask_suffixes=("", "_mask"))

    def object_name(self, category: str) -> str:
        return f"{category.split('_')[0].lower()} texture"
