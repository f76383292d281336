"""Magnetic Tile Defects (MTD; Huang, Qiu, Yuan, The Visual Computer 2020).

Official layout: MT_<Blowhole|Break|Crack|Fray|Free|Uneven>/Imgs/<name>.jpg with the mask
<name>.png beside it. Greyscale, image sizes vary, mask edges are not binary (binarised at > 127).

Decisions (ours; the release defines no split):
- One category, `magnetic_tile`; MT_Free images are normal, every other MT_* class is a defect class.
- Labels come from the folder: an image in a defect-class folder is defective (label 1) even when
  its mask is empty (a few are, e.g. one in MT_Uneven). Its pixels then all count as normal, which
  is what the annotation says; image-level metrics see the defect the dataset authors sorted it
  under. `datasets check` counts such images and warns. (SAA+ labels by mask content instead;
  DOT/IAP-AS by folder, as here.)
- Defect-class images must have a mask; MT_Free masks are optional (paired and size-checked when
  present; a positive pixel in one is reported by `datasets check`).
- References: a normal image is a reference when the salted SHA-256 of its relative path (e.g.
  "MT_Free/Imgs/exp0_num_743.jpg") falls below 0.10 (common.reference_ids); references are never
  test images. The rule is per image, so the 229-image sample splits as the full release does.
"""
from __future__ import annotations

from pathlib import Path

from .base import IMAGE_EXTENSIONS, CategoryCounts, Sample
from .common import (LoaderDataset, has_child_dir, image_files, pair_masks, rel_id, split_references,
                     unique_stems, visible_dirs)
from .mvtec_layout import is_mvtec_tree, repackaged_splits

CATEGORY = "magnetic_tile"
NORMAL_CLASS = "MT_Free"
IMAGE_EXTS = (".jpg", ".jpeg")
MASK_EXTS = (".png",)

# Images per class folder in the official release (1,344 in all).
OFFICIAL_CLASS_COUNTS = {"MT_Blowhole": 115, "MT_Break": 85, "MT_Crack": 57, "MT_Fray": 32,
                         "MT_Free": 952, "MT_Uneven": 103}


class MagneticTile(LoaderDataset):
    name = "mtd"
    kind = "texture"
    description = "Magnetic Tile Defects: 1,344 greyscale images, 392 defective"
    layout = ("MT_<Blowhole|Break|Crack|Fray|Free|Uneven>/Imgs/<name>.jpg with <name>.png beside it "
              "(official), or an MVTec-style re-packaging <cat>/test/<good|defect>/ + ground_truth/")
    source = "https://github.com/abin24/Magnetic-tile-defect-datasets. (Huang et al. 2020)"
    official_counts = {CATEGORY: CategoryCounts(normal=952, defective=392, reference=0)}
    counts_before_split = True
    default_object_name = "magnetic tile"

    def _scan(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        if is_mvtec_tree(self.root):
            return repackaged_splits(self)
        test: list[Sample] = []
        for cls in visible_dirs(self.root):
            if cls.name.startswith("MT_"):
                test.extend(self._scan_class(cls))
        if not test:
            return {}
        return {CATEGORY: split_references(test)}

    def _scan_class(self, cls: Path) -> list[Sample]:
        if not has_child_dir(cls, "Imgs"):
            self.issues.add(cls, "MTD class folder without Imgs/ (expected MT_<class>/Imgs/<name>.jpg)")
            return []
        folder = cls / "Imgs"
        files = image_files(folder, self.issues, IMAGE_EXTENSIONS, unique=False)
        for p in files:
            if p.suffix.lower() not in IMAGE_EXTS + MASK_EXTS:
                self.issues.add(p, "unexpected file type in MTD (images are .jpg, masks .png)")
        # An image and its mask share a stem here, so stems are unique per group, not per folder.
        images = unique_stems([p for p in files if p.suffix.lower() in IMAGE_EXTS], self.issues)
        masks = unique_stems([p for p in files if p.suffix.lower() in MASK_EXTS], self.issues)
        pairs = pair_masks(images, masks, ("",), self.issues, image_dir=folder)
        normal = cls.name == NORMAL_CLASS
        out = []
        for img in images:
            mask = pairs.get(img)
            if mask is None and not normal:
                self.issues.add(img, f"defective image without a mask (expected {img.stem}.png beside it)")
                continue
            out.append(Sample(id=rel_id(img, self.root), category=CATEGORY, label=0 if normal else 1,
                              image_path=img, mask_path=mask))
        return out
