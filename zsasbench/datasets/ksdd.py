"""KolektorSDD (KSDD1; Tabernik et al., J. Intell. Manuf. 2020): electrical commutator surfaces.

Official layout: kos01/ .. kos50/, each with PartN.jpg (greyscale) and PartN_label.bmp. An image is
defective when its label file has any pixel > 127, so listing KSDD reads the 399 small label files
(the label is defined by them). Every image must have its label file.

Split (ours; the release has none): one category `electrical_commutator`. A normal image is a
reference when the salted SHA-256 of its relative path (e.g. "kos01/Part0.jpg") falls below 0.10
(see common.reference_ids): about 10 % of the normal images, never in the test set; every other
image, all defective ones included, is a test image. The same rule applied to a subset of the
release selects the same images.
"""
from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from .base import CategoryCounts, Sample, read_mask
from .common import LoaderDataset, image_files, pair_masks, rel_id, split_references, visible_dirs
from .mvtec_layout import is_mvtec_tree, repackaged_splits

CATEGORY = "electrical_commutator"


class KolektorSDD(LoaderDataset):
    name = "ksdd"
    kind = "texture"
    description = "KolektorSDD: 399 images of electrical commutators, 52 defective"
    layout = ("kos01/ .. kos50/ each with PartN.jpg and PartN_label.bmp (official), or an MVTec-style "
              "re-packaging <cat>/test/<good|defect>/ + <cat>/ground_truth/<defect>/")
    source = "https://www.vicos.si/resources/kolektorsdd/ (KolektorSDD, Tabernik et al. 2020)"
    official_counts = {CATEGORY: CategoryCounts(normal=347, defective=52, reference=0)}
    counts_before_split = True  # official counts are totals: test normals + references = 347
    default_object_name = "electrical commutator"

    def _scan(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        if is_mvtec_tree(self.root):
            return repackaged_splits(self)
        test: list[Sample] = []
        for folder in visible_dirs(self.root):
            test.extend(self._scan_folder(folder))
        if not test:
            return {}
        return {CATEGORY: split_references(test)}

    def _scan_folder(self, folder: Path) -> list[Sample]:
        files = image_files(folder, self.issues)
        labels = [p for p in files if p.stem.endswith("_label")]
        images = [p for p in files if not p.stem.endswith("_label")]
        pairs = pair_masks(images, labels, ("_label",), self.issues, image_dir=folder)
        out = []
        for img in images:
            lab = pairs.get(img)
            if lab is None:
                self.issues.add(img, f"image without its label file {img.stem}_label.bmp "
                                     "(KSDD gives every image a label file)")
                continue
            try:
                positive = bool(read_mask(lab).any())
            except DataError as exc:
                self.issues.add(lab, f"unreadable label file ({exc.__cause__ or exc})")
                continue
            out.append(Sample(id=rel_id(img, self.root), category=CATEGORY, label=int(positive),
                              image_path=img, mask_path=lab))
        return out
