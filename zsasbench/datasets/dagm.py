"""DAGM 2007 (Wieler & Hahn, "Weakly Supervised Learning for Industrial Optical Inspection").

Official layout: Class1/ .. Class10/, each with Train/ and Test/ holding NNNN.PNG (512x512
greyscale) and Label/ with NNNN_label.PNG masks and Label/Labels.txt. Labels.txt: an optional
first line with one number, then one line per image: id, defect flag (0/1), image file, 0, mask
file ("0" for none). The masks are weak labels: ellipses roughly around each defect.

Split: the release's own. Test set = ClassN/Test (every image); references = the normal images of
ClassN/Train (its defective images are not used). Labels come from Labels.txt, cross-checked
against the files: every image listed, every listed file present, every mask named
<image stem>_label and listed. Without Labels.txt, an image is defective when it has a mask.
"""
from __future__ import annotations

from pathlib import Path

from .base import CategoryCounts, Sample
from .common import LoaderDataset, has_child_dir, image_files, pair_masks, rel_id, visible_dirs
from .mvtec_layout import is_mvtec_tree, repackaged_splits


def _official(n_normal: int, n_defective: int) -> CategoryCounts:
    # Train and Test are halves of each class; the Train normals are the references.
    return CategoryCounts(normal=n_normal // 2, defective=n_defective // 2, reference=n_normal // 2)


OFFICIAL = {f"Class{i}": _official(1000, 150) for i in range(1, 7)}
OFFICIAL.update({f"Class{i}": _official(2000, 300) for i in range(7, 11)})


class DAGM2007(LoaderDataset):
    name = "dagm"
    kind = "texture"
    description = "DAGM 2007: 10 classes of synthetic textured surfaces with weakly labelled defects"
    layout = ("Class<N>/<Train|Test>/NNNN.PNG with Class<N>/<Train|Test>/Label/NNNN_label.PNG and "
              "Label/Labels.txt (official), or an MVTec-style re-packaging <cat>/test/<good|defect>/")
    source = ("https://hci.iwr.uni-heidelberg.de/node/3616 (DAGM 2007 competition data; also mirrored on "
              "Kaggle as 'DAGM 2007')")
    official_counts = OFFICIAL
    default_object_name = "textured surface"

    def _scan(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        if is_mvtec_tree(self.root):
            return repackaged_splits(self)
        out = {}
        for cls in visible_dirs(self.root):
            has_train, has_test = has_child_dir(cls, "Train"), has_child_dir(cls, "Test")
            if not (has_train or has_test):
                continue
            if not has_test:
                self.issues.add(cls, "DAGM class folder without Test/ (expected Class<N>/Test/NNNN.PNG)")
                continue
            test = self._scan_split(cls / "Test", cls.name)
            refs = [s for s in self._scan_split(cls / "Train", cls.name) if s.label == 0] if has_train else []
            out[cls.name] = (test, refs)
        return out

    def _scan_split(self, split_dir: Path, category: str) -> list[Sample]:
        images = image_files(split_dir, self.issues)
        label_dir = split_dir / "Label"
        masks = image_files(label_dir, self.issues)
        listing = label_dir / "Labels.txt"
        if listing.is_file():
            labelled = self._pair_from_listing(listing, images, masks)
        else:
            pairs = pair_masks(images, masks, ("_label",), self.issues, image_dir=split_dir)
            labelled = [(img, pairs.get(img)) for img in images]
        return [Sample(id=rel_id(img, self.root), category=category, label=int(mask is not None),
                       image_path=img, mask_path=mask) for img, mask in labelled]

    def _pair_from_listing(self, listing: Path, images: list[Path],
                           masks: list[Path]) -> list[tuple[Path, Path | None]]:
        entries = parse_labels_txt(listing, self.issues)
        image_by_name = {p.name.lower(): p for p in images}
        mask_by_name = {p.name.lower(): p for p in masks}
        for name in entries:
            if name not in image_by_name:
                self.issues.add(listing, f"lists image {name} which is not in {listing.parent.parent}")
        used: set[Path] = set()
        out: list[tuple[Path, Path | None]] = []
        for img in images:
            key = img.name.lower()
            if key not in entries:
                self.issues.add(img, f"image not listed in {listing}")
                continue
            mask_name = entries[key]
            if mask_name is None:
                out.append((img, None))
                continue
            mask = mask_by_name.get(mask_name)
            if mask is None:
                self.issues.add(listing.parent / mask_name,
                                f"mask listed in Labels.txt for {img.name} does not exist")
                continue
            if mask.stem.lower() != f"{img.stem}_label".lower():
                self.issues.add(mask, f"Labels.txt pairs this mask with {img.name}, but a mask must be "
                                      "named <image stem>_label (misaligned listing)")
                continue
            used.add(mask)
            out.append((img, mask))
        for m in masks:
            if m not in used and m.name.lower() not in {v for v in entries.values() if v}:
                self.issues.add(m, f"mask without an image: not listed in {listing.name}")
        return out


def parse_labels_txt(path: Path, issues) -> dict[str, str | None]:
    """Labels.txt -> {image file name (lower case): mask file name (lower case) or None}."""
    entries: dict[str, str | None] = {}
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        issues.add(path, f"unreadable ({exc})")
        return entries
    for lineno, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or (lineno == 1 and len(fields) == 1):
            continue  # blank line or the one-number first line
        where = f"{path}:{lineno}"
        if len(fields) != 5 or fields[1] not in ("0", "1"):
            issues.add(where, "expected 5 fields: id, defect flag 0/1, image file, 0, mask file")
            continue
        _id, flag, image, _zero, mask = fields
        key = image.lower()
        if key in entries:
            issues.add(where, f"image {image} listed twice")
            continue
        if flag == "1" and mask == "0":
            issues.add(where, f"defect flag 1 for {image} but no mask file")
            continue
        if flag == "0" and mask != "0":
            issues.add(where, f"defect flag 0 for {image} but a mask file {mask}")
            continue
        entries[key] = mask.lower() if flag == "1" else None
    return entries
