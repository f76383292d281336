"""Tiny fake copies of the seven benchmark datasets in their official layouts, for tests.

Real formats where the dataset has them (.bmp, greyscale .jpg, mixed extensions, Labels.txt) and
non-square sizes. Every defective image's mask carries a box whose position is a function of the
image stem (`box_for(stem, h, w)`), so a test can tell whether each image got its own mask.
Stems such as "7", "10", "100" sort differently from "7_mask", "10_mask", "100_mask", so pairing
by sorted position would misalign them.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
from PIL import Image

MVTEC_STEMS = ("7", "10", "100")  # sorted: 10, 100, 7 ; masks sorted: 100_mask, 10_mask, 7_mask


def _rng(key: str) -> np.random.Generator:
    return np.random.default_rng(int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "big"))


def box_for(stem: str, h: int, w: int) -> tuple[int, int, int, int]:
    """A stem-specific box (y0, y1, x0, x1) inside an h x w image."""
    k = int(hashlib.sha256(stem.encode()).hexdigest(), 16)
    bh, bw = max(2, h // 4), max(2, w // 4)
    y0 = k % (h - bh)
    x0 = (k // 7919) % (w - bw)
    return y0, y0 + bh, x0, x0 + bw


def expected_mask(stem: str, h: int, w: int) -> np.ndarray:
    m = np.zeros((h, w), dtype=bool)
    y0, y1, x0, x1 = box_for(stem, h, w)
    m[y0:y1, x0:x1] = True
    return m


def write_image(path: Path, h: int, w: int, grey: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = _rng(str(path))
    arr = rng.integers(0, 256, size=(h, w) if grey else (h, w, 3), dtype=np.uint8)
    Image.fromarray(arr, mode="L" if grey else "RGB").save(path)
    return path


def write_mask(path: Path, stem: str, h: int, w: int, empty: bool = False) -> Path:
    """0/255 mask with the stem's box; a ring of 128 (kept) and 127 (dropped) around it mimics the
    non-binary edges of real masks."""
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.zeros((h, w), dtype=np.uint8)
    if not empty:
        y0, y1, x0, x1 = box_for(stem, h, w)
        arr[y0:y1, x0:x1] = 255
        arr[y0, x0:x1] = 128  # > 127: inside
        if y1 < h:
            arr[y1, x0:x1] = 127  # not > 127: outside
    Image.fromarray(arr, mode="L").save(path)
    return path


def make_mvtec_tree(root: Path, categories=("bottle", "metal_nut"), hw=(24, 32), good="good",
                    defects=("crack",), img_ext=".png", mask_ext=".png", mask_suffix="_mask",
                    n_train=3, n_test_good=2, stems=MVTEC_STEMS, grey=False) -> Path:
    h, w = hw
    for cat in categories:
        c = root / cat
        for i in range(n_train):
            write_image(c / "train" / good / f"{i:03d}{img_ext}", h, w, grey)
        for i in range(n_test_good):
            write_image(c / "test" / good / f"{i:03d}{img_ext}", h, w, grey)
        for d in defects:
            for s in stems:
                write_image(c / "test" / d / f"{s}{img_ext}", h, w, grey)
                write_mask(c / "ground_truth" / d / f"{s}{mask_suffix}{mask_ext}", s, h, w)
    return root


def make_mvtec(root: Path) -> Path:
    return make_mvtec_tree(root, ("bottle", "metal_nut"), hw=(24, 32), defects=("crack", "scratch"))


def make_mpdd(root: Path) -> Path:
    return make_mvtec_tree(root, ("bracket_black", "tubes"), hw=(30, 20), defects=("hole",))


def make_dtd(root: Path) -> Path:
    return make_mvtec_tree(root, ("Blotchy_099", "Woven_001"), hw=(32, 32), defects=("bad",))


def make_btad(root: Path) -> Path:
    # 01: .bmp images, .png masks (square); 03: .bmp images and .bmp masks, 800x600-like aspect.
    make_mvtec_tree(root, ("01",), hw=(32, 32), good="ok", defects=("ko",), img_ext=".bmp",
                    mask_ext=".png", mask_suffix="")
    make_mvtec_tree(root, ("03",), hw=(24, 32), good="ok", defects=("ko",), img_ext=".bmp",
                    mask_ext=".bmp", mask_suffix="")
    return root


KSDD_HW = (40, 16)  # tall and narrow like the 500 x ~1250 originals
KSDD_DEFECTIVE = {("kos01", "Part2"), ("kos02", "Part0"), ("kos03", "Part5")}


def make_ksdd(root: Path, n_folders: int = 3, n_parts: int = 8) -> Path:
    h, w = KSDD_HW
    for k in range(1, n_folders + 1):
        for p in range(n_parts):
            folder, stem = f"kos{k:02d}", f"Part{p}"
            write_image(root / folder / f"{stem}.jpg", h, w, grey=True)
            write_mask(root / folder / f"{stem}_label.bmp", f"{folder}/{stem}", h, w,
                       empty=(folder, stem) not in KSDD_DEFECTIVE)
    return root


MTD_FILES = {  # class -> [(stem, (h, w), empty mask)]
    "MT_Free": [(f"exp1_num_{i}", (20 + i, 30 - i), True) for i in range(12)],
    "MT_Crack": [("exp1_num_3191", (22, 35), False), ("exp0_num_12", (31, 18), False)],
    "MT_Uneven": [("exp0_num_461", (25, 27), False), ("exp1_num_500", (19, 33), True)],
}


def make_mtd(root: Path) -> Path:
    for cls, files in MTD_FILES.items():
        for stem, (h, w), empty in files:
            write_image(root / cls / "Imgs" / f"{stem}.jpg", h, w, grey=True)
            write_mask(root / cls / "Imgs" / f"{stem}.png", stem, h, w, empty=empty)
    return root


DAGM_HW = (32, 32)


def make_dagm(root: Path, classes=("Class1", "Class2"), n_normal=4, defective=("0002", "0005")) -> Path:
    h, w = DAGM_HW
    for cls in classes:
        for split in ("Train", "Test"):
            d = root / cls / split
            lines = ["1"]
            stems = [f"{i:04d}" for i in range(1, n_normal + len(defective) + 1)]
            for i, stem in enumerate(stems, 1):
                write_image(d / f"{stem}.PNG", h, w, grey=True)
                if stem in defective:
                    write_mask(d / "Label" / f"{stem}_label.PNG", f"{cls}/{split}/{stem}", h, w)
                    lines.append(f"{i}\t1\t{stem}.PNG\t0\t{stem}_label.PNG")
                else:
                    lines.append(f"{i}\t0\t{stem}.PNG\t0\t0")
            (d / "Label").mkdir(parents=True, exist_ok=True)
            (d / "Label" / "Labels.txt").write_text("\n".join(lines) + "\n")
    return root


def truncate(path: Path, keep: int = 40) -> None:
    """Cut a file short so that decoding it fails."""
    data = path.read_bytes()
    path.write_bytes(data[:keep])
