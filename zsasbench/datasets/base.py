"""Sample and Dataset: the seam between data on disk and everything else.

A Sample decodes its image and mask only when asked, so listing a dataset is cheap.
Images are HxWx3 uint8 RGB; masks are HxW bool (all False for normal images).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import DataError

Kind = Literal["object", "texture"]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
MASK_THRESHOLD = 127  # masks are binarised at > 127


def read_image(path: Path) -> np.ndarray:
    """Decode an image file to HxWx3 uint8 RGB (greyscale and palette sources converted)."""
    try:
        with Image.open(path) as im:
            im.load()
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def read_mask(path: Path, expected_hw: tuple[int, int] | None = None) -> np.ndarray:
    """Decode a mask file to HxW bool, binarised at > 127; checks its size against the image."""
    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im.convert("L"))
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: unreadable or truncated mask ({exc})") from exc
    if expected_hw is not None and arr.shape != tuple(expected_hw):
        raise DataError(
            f"{path}: mask is {arr.shape[1]}x{arr.shape[0]} (WxH) but its image is "
            f"{expected_hw[1]}x{expected_hw[0]}; a mask must have its image's size"
        )
    return arr > MASK_THRESHOLD


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header only."""
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"{path}: unreadable image ({exc})") from exc
    return h, w


@dataclass(eq=False)
class Sample:
    """One image with its ground truth. `image` and `mask` decode on first access.

    id: a stable identifier (the image path relative to the dataset root).
    label: 0 normal, 1 defective, -1 unknown (unlabelled images, for prediction only).
    mask_path None means an all-False mask.
    """

    id: str
    category: str
    label: int
    image_path: Path | None = None
    mask_path: Path | None = None
    _image: np.ndarray | None = field(default=None, repr=False)
    _mask: np.ndarray | None = field(default=None, repr=False)

    @classmethod
    def from_arrays(cls, id: str, category: str, image: np.ndarray, mask: np.ndarray | None = None,
                    label: int | None = None) -> "Sample":
        image = np.ascontiguousarray(image)
        if image.ndim == 2:
            image = np.repeat(image[..., None], 3, axis=2)
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"{id}: image must be HxWx3 uint8, got {image.shape} {image.dtype}")
        if mask is None:
            mask = np.zeros(image.shape[:2], dtype=bool)
        mask = np.asarray(mask).astype(bool)
        if mask.shape != image.shape[:2]:
            raise ValueError(f"{id}: mask shape {mask.shape} differs from image shape {image.shape[:2]}")
        if label is None:
            label = int(mask.any())
        return cls(id=id, category=category, label=int(label), _image=image, _mask=mask)

    @property
    def image(self) -> np.ndarray:
        if self._image is None:
            assert self.image_path is not None
            self._image = read_image(self.image_path)
        return self._image

    @property
    def mask(self) -> np.ndarray:
        if self._mask is None:
            # The size check needs only the image header, not a decode (scoring reads masks alone).
            hw = self._image.shape[:2] if self._image is not None or self.image_path is None \
                else image_size(self.image_path)
            if self.mask_path is None:
                self._mask = np.zeros(hw, dtype=bool)
            else:
                self._mask = read_mask(self.mask_path, hw)
        return self._mask

    def release(self) -> None:
        """Drop decoded arrays (they decode again on next access)."""
        if self.image_path is not None:
            self._image = None
            self._mask = None


@dataclass
class CategoryCounts:
    normal: int
    defective: int
    reference: int


class Dataset:
    """A benchmark dataset on disk. Subclasses list samples; decoding stays lazy.

    Subclasses set `name`, `kind`, `official_counts` (category -> CategoryCounts of the official
    release, for `datasets check`) and implement `_scan()` returning, per category, the test and
    reference sample lists. `_scan` must pair images and masks by file stem and raise DataError on
    any rule broken.
    """

    name: ClassVar[str] = ""
    kind: ClassVar[Kind] = "object"
    description: ClassVar[str] = ""
    layout: ClassVar[str] = ""  # how the folder must look, shown in errors
    source: ClassVar[str] = ""  # where to obtain the data
    official_counts: ClassVar[dict[str, CategoryCounts]] = {}

    def __init__(self, root: str | Path):
        self.root = Path(root)
        if not self.root.is_dir():
            raise DataError(
                f"dataset {self.name!r}: folder {self.root} does not exist. Expected layout: {self.layout}"
            )
        self._splits: dict[str, tuple[list[Sample], list[Sample]]] | None = None

    # --- what subclasses implement -------------------------------------------------------
    def _scan(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        raise NotImplementedError

    def object_name(self, category: str) -> str:
        """The name of what the images show, as prompt-based methods put it in text."""
        return category.replace("_", " ").lower()

    # --- public API -----------------------------------------------------------------------
    def _ensure(self) -> dict[str, tuple[list[Sample], list[Sample]]]:
        if self._splits is None:
            splits = self._scan()
            if not splits:
                raise DataError(f"dataset {self.name!r}: no category found under {self.root}. "
                                f"Expected layout: {self.layout}")
            for cat, (test, _ref) in splits.items():
                if not test:
                    raise DataError(f"dataset {self.name!r}: category {cat!r} under {self.root} has no test image")
            self._splits = dict(sorted(splits.items()))
        return self._splits

    @property
    def categories(self) -> list[str]:
        return list(self._ensure())

    def _category(self, category: str) -> tuple[list[Sample], list[Sample]]:
        splits = self._ensure()
        if category not in splits:
            raise DataError(f"dataset {self.name!r}: unknown category {category!r}; "
                            f"valid: {', '.join(splits)}")
        return splits[category]

    def test_samples(self, category: str) -> list[Sample]:
        return list(self._category(category)[0])

    def reference_samples(self, category: str) -> list[Sample]:
        return list(self._category(category)[1])

    def counts(self, category: str) -> CategoryCounts:
        test, ref = self._category(category)
        return CategoryCounts(normal=sum(s.label == 0 for s in test), defective=sum(s.label == 1 for s in test),
                              reference=len(ref))

    def has_masks(self, category: str) -> bool:
        """False when a category has image labels but no pixel masks (only image metrics are defined)."""
        return True

