"""Helpers shared by the dataset loaders: problem collection, stem pairing, the reference split.

Every loader reports a broken rule through `Issues.add(file, rule)`. Normally that raises a
DataError naming the file and the rule; `zsasbench datasets check` switches a dataset to collecting
mode so that one pass lists every problem instead of stopping at the first.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError
from .base import IMAGE_EXTENSIONS, MASK_THRESHOLD, CategoryCounts, Dataset, Sample

UNLABELLED = -1  # Sample.label for images with no ground truth at all (folder dataset, predict)

# Reference split for datasets without an official one (KSDD, MTD): a normal image is a reference
# when a salted SHA-256 of its relative path falls below this fraction. The decision for one image
# never depends on which other images are present, so a sample of a release splits exactly as the
# full release does.
REFERENCE_FRACTION = 0.10
REFERENCE_SALT = "zsasbench-reference-split-v1"


@dataclass
class Issues:
    """Where loaders report broken rules: raise at once (default) or collect them all."""

    collect: bool = False
    problems: list[tuple[str, str]] = field(default_factory=list)

    def add(self, file: Path | str, rule: str) -> None:
        if not self.collect:
            raise DataError(f"{file}: {rule}")
        self.problems.append((str(file), rule))


def rel_id(path: Path, root: Path) -> str:
    """A sample id: the path relative to the dataset root, with forward slashes."""
    p, r = str(path), str(root)
    if p.startswith(r + os.sep):  # fast path (pathlib's relative_to dominated listing time)
        rel = p[len(r) + 1:]
        return rel if os.sep == "/" else rel.replace(os.sep, "/")
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def visible_dirs(folder: Path) -> list[Path]:
    """Sub-folders sorted by name, skipping hidden and OS metadata folders (.git, __MACOSX)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() and not p.name.startswith((".", "__")))


def has_child_dir(folder: Path, name: str) -> bool:
    """Exact-case test for a child folder (a case-insensitive file system must not make `Test`
    look like `test`)."""
    return folder.is_dir() and any(p.name == name and p.is_dir() for p in folder.iterdir())


def image_files(folder: Path, issues: Issues, extensions: Sequence[str] = IMAGE_EXTENSIONS,
                unique: bool = True) -> list[Path]:
    """Image files directly in `folder`, sorted by name. With `unique`, two images sharing a stem
    is an error (pairing by stem would be ambiguous)."""
    try:
        with os.scandir(folder) as it:  # one directory read, file types without a stat per file
            names = sorted(e.name for e in it if e.is_file() and not e.name.startswith(".")
                           and os.path.splitext(e.name)[1].lower() in extensions)
    except (FileNotFoundError, NotADirectoryError):
        return []
    files = [folder / n for n in names]
    return unique_stems(files, issues) if unique else files


def unique_stems(files: list[Path], issues: Issues) -> list[Path]:
    seen: dict[str, Path] = {}
    out = []
    for p in files:
        if p.stem in seen:
            issues.add(p, f"two images with the same stem {p.stem!r} ({seen[p.stem].name}); "
                          "images are paired with masks by stem, so stems must be unique in a folder")
            continue
        seen[p.stem] = p
        out.append(p)
    return out


def _match_stem(mask_stem: str, image_stems: dict[str, Path], suffixes: Sequence[str] | None) -> Path | None:
    if suffixes is not None:
        for suffix in sorted(suffixes, key=len):  # exact stem first, then the declared suffixes
            if suffix == "":
                if mask_stem in image_stems:
                    return image_stems[mask_stem]
            elif mask_stem.endswith(suffix) and mask_stem[: -len(suffix)] in image_stems:
                return image_stems[mask_stem[: -len(suffix)]]
        return None
    # Lenient rule (folder dataset): the image stem, optionally followed by a separator and any
    # suffix ("img7_mask", "img7-gt"). "img70_mask" does not match "img7"; the longest stem wins.
    if mask_stem in image_stems:
        return image_stems[mask_stem]
    for i in range(len(mask_stem) - 1, 0, -1):
        if not mask_stem[i].isalnum() and mask_stem[:i] in image_stems:
            return image_stems[mask_stem[:i]]
    return None


def pair_masks(images: Iterable[Path], masks: Iterable[Path], suffixes: Sequence[str] | None,
               issues: Issues, image_dir: Path | None = None) -> dict[Path, Path]:
    """Pair each mask with its image by stem, never by position.

    suffixes: the accepted mask-name endings after the image stem (e.g. ("_mask",); "" means the
    same stem). None: the lenient folder rule (stem, then a separator and anything).
    A mask without an image and two masks for one image are reported; an image without a mask
    is simply absent from the result (the caller decides whether that is allowed).
    """
    image_stems = {p.stem: p for p in images}
    pairs: dict[Path, Path] = {}
    for m in masks:
        img = _match_stem(m.stem, image_stems, suffixes)
        if img is None:
            want = "the image's stem" if suffixes is None else \
                " or ".join(f"<image stem>{s}" if s else "<image stem>" for s in suffixes)
            where = f" in {image_dir}" if image_dir is not None else ""
            issues.add(m, f"mask without an image: no image{where} has a stem that gives this mask's "
                          f"name (mask name = {want})")
        elif img in pairs:
            issues.add(m, f"second mask for image {img.name} (first: {pairs[img].name}); "
                          "one mask per image")
        else:
            pairs[img] = m
    return pairs


def hash_unit(key: str, salt: str = REFERENCE_SALT) -> float:
    """A number in [0, 1) fixed by `key` alone (SHA-256; independent of Python's hash seed)."""
    digest = hashlib.sha256(f"{salt}:{key}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def reference_ids(normal_ids: Sequence[str], fraction: float = REFERENCE_FRACTION) -> set[str]:
    """Which normal images (by id) become references. At least one when any normal exists:
    if no hash falls below `fraction`, the image with the smallest hash is taken."""
    if not normal_ids:
        return set()
    chosen = {i for i in normal_ids if hash_unit(i) < fraction}
    if not chosen:
        chosen = {min(normal_ids, key=hash_unit)}
    return chosen


def split_references(test: list[Sample]) -> tuple[list[Sample], list[Sample]]:
    """Move the hash-chosen normal samples out of `test` into the reference list."""
    refs = reference_ids([s.id for s in test if s.label == 0])
    return [s for s in test if s.id not in refs], [s for s in test if s.id in refs]


class LoaderDataset(Dataset):
    """Dataset base of the loaders in this package: adds problem collection, `has_masks`, object
    names from a table, and counts that ignore unlabelled samples (label -1)."""

    object_names: dict[str, str] = {}
    default_object_name: str = ""

    def __init__(self, root: str | Path):
        super().__init__(root)
        self.issues = Issues()
        self._has_masks: dict[str, bool] = {}

    def object_name(self, category: str) -> str:
        if category in self.object_names:
            return self.object_names[category]
        if self.default_object_name:
            return self.default_object_name
        return super().object_name(category)

    def has_masks(self, category: str) -> bool:
        """False when the category's defective images carry no pixel ground truth at all (only
        possible in the folder dataset): pixel metrics must then be skipped, not computed
        against all-False masks."""
        self._category(category)
        return self._has_masks.get(category, True)

    def counts(self, category: str) -> CategoryCounts:
        test, ref = self._category(category)
        return CategoryCounts(normal=sum(s.label == 0 for s in test),
                              defective=sum(s.label == 1 for s in test), reference=len(ref))

    def scan_all(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        """Scan in collecting mode: returns what could be listed; `self.issues.problems` holds
        every broken rule (used by `datasets check`)."""
        self.issues = Issues(collect=True)
        return self._scan()


def load_resized(sample: Sample, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Decode a sample straight to size `hw` = (H, W): image HxWx3 uint8 (bilinear) and mask HxW
    bool (nearest, > 127). The same checks as `sample.image` / `sample.mask` (unreadable or
    truncated files, mask size = image size), without the full-resolution array round trip, for
    code that evaluates at a fixed size anyway. Samples built from arrays are resized from them."""
    size = (hw[1], hw[0])
    if sample.image_path is None:
        img = np.asarray(Image.fromarray(sample.image).resize(size, Image.BILINEAR))
        mask = np.asarray(Image.fromarray(sample.mask.view(np.uint8)).resize(size, Image.NEAREST)) > 0
        return img, mask
    try:
        with Image.open(sample.image_path) as im:
            im.load()
            src_hw = (im.height, im.width)
            img = np.asarray(im.convert("RGB").resize(size, Image.BILINEAR))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{sample.image_path}: unreadable or truncated image ({exc})") from exc
    if sample.mask_path is None:
        return img, np.zeros(hw, dtype=bool)
    try:
        with Image.open(sample.mask_path) as m:
            m.load()
            if (m.height, m.width) != src_hw:
                raise DataError(f"{sample.mask_path}: mask is {m.width}x{m.height} (WxH) but its image is "
                                f"{src_hw[1]}x{src_hw[0]}; a mask must have its image's size")
            mask = np.asarray(m.convert("L").resize(size, Image.NEAREST)) > MASK_THRESHOLD
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{sample.mask_path}: unreadable or truncated mask ({exc})") from exc
    return img, mask
