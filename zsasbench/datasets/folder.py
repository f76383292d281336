"""Your own images: `--dataset folder=PATH`.

Three shapes of PATH are accepted (detected in this order):
1. PATH/test/<good|defect-name>/*  (one category named after PATH), with optional masks
   PATH/ground_truth/<defect-name>/<stem>*  and optional references PATH/train/good/*.
2. PATH/<category>/test/... : several such trees, one category per sub-folder.
3. A flat folder of images with no labels at all: one category named after PATH whose samples
   have label -1 (UNLABELLED: unknown) and no mask. Only prediction makes sense then.

Masks are paired by stem; a mask may add a separator and a suffix ("img7_mask.png", "img7-gt.png";
"img70_mask" never pairs with "img7"). Masks are all-or-nothing per category: with none, the
category is scored on image labels only (`has_masks(category)` is False); with some, every
defective image needs one.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

from ..errors import DataError
from .base import IMAGE_EXTENSIONS, Kind, Sample
from .common import UNLABELLED, LoaderDataset, image_files, rel_id
from .mvtec_layout import TreeSpec, is_mvtec_tree, scan_tree

FOLDER_SPEC = TreeSpec(good_names=("good",), reference_dir=("train", "good"), mask_suffixes=None,
                       require_masks=False)


class FolderDataset(LoaderDataset):
    name = "folder"
    description = "your own images: PATH/test/<good|defect>/ (+ ground_truth/, train/good/) or a flat folder"
    layout = ("PATH/test/<good|defect-name>/* with optional PATH/ground_truth/<defect-name>/<stem>* and "
              "PATH/train/good/*; or PATH/<category>/test/...; or a flat folder of images")
    source = "your own images"

    def __init__(self, root: str | Path, object_name: str | None = None, kind: Kind = "object"):
        if kind not in ("object", "texture"):
            raise DataError(f"folder dataset: kind must be 'object' or 'texture', got {kind!r}")
        super().__init__(root)
        self.kind = kind
        self._object_name = object_name

    def object_name(self, category: str) -> str:
        return self._object_name or super().object_name(category)

    def _scan(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        if is_mvtec_tree(self.root):
            for loose in image_files(self.root, self.issues):
                self.issues.add(loose, "image directly in a folder that holds test/: move it into "
                                       "test/<good|defect-name>/ or train/good/")
            scans = scan_tree(self.root, FOLDER_SPEC, self.issues)
            self._has_masks = {c: s.has_masks for c, s in scans.items()}
            return {c: (s.test, s.reference) for c, s in scans.items()}
        images = image_files(self.root, self.issues)
        if not images:
            raise DataError(f"{self.root}: no image found (looked for {', '.join(IMAGE_EXTENSIONS)} files "
                            f"directly in it, or a test/ folder). Expected: {self.layout}")
        category = self.root.resolve().name
        self._has_masks = {category: False}
        return {category: (unlabelled_samples(images, category, self.root), [])}


def unlabelled_samples(files: Iterable[str | Path], category: str = "images",
                       root: str | Path | None = None) -> list[Sample]:
    """Samples for images with no ground truth (label -1, no mask), e.g. for `zsasbench predict`.
    Ids are paths relative to `root` when given, else the paths as passed. A missing file or
    one that is not an image is an error naming it; unreadable content fails when decoded."""
    out, seen = [], set()
    for f in files:
        path = Path(f)
        if not path.is_file():
            raise DataError(f"{path}: no such image file")
        if path.suffix.lower() not in IMAGE_EXTENSIONS:
            raise DataError(f"{path}: not an image file (accepted: {', '.join(IMAGE_EXTENSIONS)})")
        sid = rel_id(path, Path(root)) if root is not None else path.as_posix()
        if sid in seen:
            raise DataError(f"{path}: given twice")
        seen.add(sid)
        out.append(Sample(id=sid, category=category, label=UNLABELLED, image_path=path))
    return out
