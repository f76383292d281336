"""BTAD, the beanTech Anomaly Detection dataset (Mishra et al., 2021): products 01, 02, 03.

Layout: <cat>/train/ok/, <cat>/test/<ok|ko>/, masks <cat>/ground_truth/ko/<stem>.<ext> with the
image's own stem. Image and mask extensions are mixed (.bmp and .png; 03 has .bmp masks): pairing
is by stem, whatever the extension.
"""
from __future__ import annotations

from .base import CategoryCounts
from .mvtec_layout import MVTecLayoutDataset, TreeSpec

# (normal test, defective test, train/ok) as published with the dataset (2,540 images).
_COUNTS = {"01": (21, 49, 400), "02": (30, 200, 399), "03": (400, 41, 1000)}


class BTAD(MVTecLayoutDataset):
    """BTAD: three industrial products; `ok` is normal, `ko` defective."""

    name = "btad"
    kind = "object"
    description = "BTAD: 3 industrial products (beanTech)"
    layout = "<01|02|03>/train/ok/*, <cat>/test/<ok|ko>/*, <cat>/ground_truth/ko/<stem>.<bmp|png>"
    source = ("http://avires.dimi.uniud.it/papers/btad/btad.zip (BTAD, Mishra et al., \"VT-ADL\", "
              "ISIE 2021; folder BTech_Dataset_transformed)")
    official_counts = {c: CategoryCounts(*v) for c, v in _COUNTS.items()}
    spec = TreeSpec(good_names=("ok",), reference_dir=("train", "ok"), mask_suffixes=("", "_mask"))
    # The release does not name its products; these describe the images without claiming more.
    object_names = {"01": "industrial product", "02": "industrial product", "03": "industrial product"}
