"""The MVTec AD folder layout, shared by MVTec AD, MPDD, BTAD, DTD-Synthetic, the MVTec-style
re-packagings of KSDD / MTD / DAGM and the folder dataset:

    <category>/train/<good>/*                      normal reference images
    <category>/test/<good>/*                       normal test images (label 0)
    <category>/test/<defect-name>/*                defective test images (label 1)
    <category>/ground_truth/<defect-name>/<stem><suffix>.*   one mask per defective image

Masks are paired with images by stem (never by sorted position). Listing checks only file names;
sizes and readability are checked when a sample is decoded (and by `datasets check`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .base import Sample
from .common import (Issues, LoaderDataset, has_child_dir, image_files, pair_masks, rel_id, split_references,
                     visible_dirs)

# Mask endings accepted in re-packagings made by other codebases (KSDD/MTD/DAGM).
REPACKAGED_MASK_SUFFIXES = ("", "_mask", "_label", "_gt")


@dataclass
class TreeSpec:
    """How one MVTec-style dataset names things."""

    good_names: tuple[str, ...] = ("good",)
    reference_dir: tuple[str, ...] = ("train", "good")
    mask_suffixes: tuple[str, ...] | None = ("_mask",)
    require_masks: bool = True  # every defective image must have a mask


@dataclass
class CategoryScan:
    test: list[Sample]
    reference: list[Sample]
    has_masks: bool


def is_mvtec_tree(root: Path) -> bool:
    """True when `root` is one MVTec-style category (has test/) or holds such categories."""
    return has_child_dir(root, "test") or any(has_child_dir(d, "test") for d in visible_dirs(root))


def category_dirs(root: Path, issues: Issues) -> dict[str, Path]:
    """Category name -> folder. `root` itself is the single category when it has test/ (named
    after the folder); otherwise every sub-folder with test/. A sub-folder with train/ or
    ground_truth/ but no test/ is a broken category, not something to skip."""
    if has_child_dir(root, "test"):
        return {root.resolve().name: root}
    cats = {}
    for d in visible_dirs(root):
        if has_child_dir(d, "test"):
            cats[d.name] = d
        elif has_child_dir(d, "train") or has_child_dir(d, "ground_truth"):
            issues.add(d, "category folder without a test/ sub-folder (expected <category>/test/<good|defect>/)")
    return cats


def scan_category(cat_dir: Path, root: Path, category: str, spec: TreeSpec, issues: Issues) -> CategoryScan:
    test_dir, gt_dir = cat_dir / "test", cat_dir / "ground_truth"
    for loose in image_files(test_dir, issues):
        issues.add(loose, "image directly under test/; put it in test/good/ or test/<defect-name>/")
    test: list[Sample] = []
    missing: list[Path] = []
    n_masked = 0
    sub_names = set()
    for sub in visible_dirs(test_dir):
        sub_names.add(sub.name)
        images = image_files(sub, issues)
        masks = image_files(gt_dir / sub.name, issues)
        pairs = pair_masks(images, masks, spec.mask_suffixes, issues, image_dir=sub)
        is_good = sub.name in spec.good_names
        for img in images:
            mask = pairs.get(img)
            if not is_good:
                if mask is None:
                    missing.append(img)
                else:
                    n_masked += 1
            test.append(Sample(id=rel_id(img, root), category=category, label=0 if is_good else 1,
                               image_path=img, mask_path=mask))
    for gsub in visible_dirs(gt_dir):
        if gsub.name not in sub_names:
            for m in image_files(gsub, issues):
                issues.add(m, f"mask without an image: there is no test/{gsub.name}/ folder")
    # Masks are all-or-nothing per category: a partly masked category would score the unmasked
    # defective images as all-normal pixels.
    if missing and (spec.require_masks or n_masked):
        for img in missing:
            sfx = spec.mask_suffixes
            ending = "*" if sfx is None else sfx[0] if len(sfx) == 1 else "<" + "|".join(sfx) + ">"
            issues.add(img, f"defective image without a mask (expected ground_truth/{img.parent.name}/"
                            f"{img.stem}{ending}.<ext>)")
    ref_dir = cat_dir.joinpath(*spec.reference_dir)
    refs = [Sample(id=rel_id(p, root), category=category, label=0, image_path=p)
            for p in image_files(ref_dir, issues)]
    return CategoryScan(test=test, reference=refs, has_masks=not missing)


def scan_tree(root: Path, spec: TreeSpec, issues: Issues) -> dict[str, CategoryScan]:
    return {cat: scan_category(d, root, cat, spec, issues) for cat, d in category_dirs(root, issues).items()}


class MVTecLayoutDataset(LoaderDataset):
    """A dataset stored in the MVTec AD layout; subclasses set `spec`, names and counts."""

    spec: TreeSpec = TreeSpec()

    def _scan(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        scans = scan_tree(self.root, self.spec, self.issues)
        self._has_masks = {c: s.has_masks for c, s in scans.items()}
        return {c: (s.test, s.reference) for c, s in scans.items()}


def mvtec_layout_text(good: str = "good", suffix: str = "_mask") -> str:
    return (f"<category>/train/{good}/*.png, <category>/test/<{good}|defect>/*.png, "
            f"<category>/ground_truth/<defect>/<stem>{suffix}.png")


def scan_repackaged(root: Path, issues: Issues) -> dict[str, CategoryScan]:
    """An MVTec-style re-packaging of KSDD, MTD or DAGM made by another codebase. Mask names may
    carry no suffix, `_mask`, `_label` or `_gt`. A category without train/good gets its references
    from test/good by the same hash rule as the official layouts (they leave the test set)."""
    scans = scan_tree(root, TreeSpec(mask_suffixes=REPACKAGED_MASK_SUFFIXES), issues)
    for s in scans.values():
        if not s.reference:
            s.test, s.reference = split_references(s.test)
    return scans


__all__ = ["CategoryScan", "MVTecLayoutDataset", "REPACKAGED_MASK_SUFFIXES", "TreeSpec", "category_dirs",
           "is_mvtec_tree", "scan_category", "scan_repackaged", "scan_tree"]


def repackaged_splits(ds) -> dict[str, tuple[list[Sample], list[Sample]]]:
    """`_scan` of a KSDD / MTD / DAGM dataset given as an MVTec-style re-packaging (records masks)."""
    scans = scan_repackaged(ds.root, ds.issues)
    ds._has_masks = {c: s.has_masks for c, s in scans.items()}
    return {c: (s.test, s.reference) for c, s in scans.items()}
