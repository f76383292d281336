"""Bad input: each broken rule gives a DataError naming the file and the rule; `datasets check`
collects every problem in one pass and warns about counts."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from fake_datasets import make_dagm, make_ksdd, make_mtd, make_mvtec, truncate, write_image, write_mask
from zsasbench.datasets import load_dataset
from zsasbench.datasets.check import check_dataset, render_report
from zsasbench.errors import DataError


def _err(fn) -> str:
    with pytest.raises(DataError) as info:
        fn()
    return str(info.value)


def test_missing_root_names_folder_and_layout(tmp_path):
    msg = _err(lambda: load_dataset("mvtec", tmp_path / "nope"))
    assert "nope" in msg and "ground_truth" in msg


def test_mask_size_differs_from_image(tmp_path):
    root = make_mvtec(tmp_path)
    mask = root / "bottle/ground_truth/crack/10_mask.png"
    Image.fromarray(np.zeros((24, 30), np.uint8)).save(mask)  # image is 24x32
    ds = load_dataset("mvtec", root)
    s = next(s for s in ds.test_samples("bottle") if s.image_path.name == "10.png")
    msg = _err(lambda: s.mask)
    assert str(mask) in msg and "must have its image's size" in msg


def test_defective_image_without_mask(tmp_path):
    root = make_mvtec(tmp_path)
    (root / "bottle/ground_truth/crack/10_mask.png").unlink()
    msg = _err(lambda: load_dataset("mvtec", root).categories)
    assert "bottle/test/crack/10.png" in msg and "defective image without a mask" in msg


def test_mask_without_image(tmp_path):
    root = make_mvtec(tmp_path)
    (root / "metal_nut/test/scratch/100.png").unlink()
    msg = _err(lambda: load_dataset("mvtec", root).categories)
    assert "metal_nut/ground_truth/scratch/100_mask.png" in msg and "mask without an image" in msg


def test_mask_folder_without_test_folder(tmp_path):
    root = make_mvtec(tmp_path)
    shutil.rmtree(root / "bottle/test/crack")
    msg = _err(lambda: load_dataset("mvtec", root).categories)
    assert "ground_truth/crack" in msg and "no test/crack/ folder" in msg


def test_truncated_image(tmp_path):
    root = make_mvtec(tmp_path)
    bad = root / "bottle/test/good/000.png"
    truncate(bad)
    ds = load_dataset("mvtec", root)
    s = next(s for s in ds.test_samples("bottle") if s.image_path == bad)
    msg = _err(lambda: s.image)
    assert str(bad) in msg and "unreadable or truncated" in msg


def test_empty_category(tmp_path):
    root = make_mvtec(tmp_path)
    for p in (root / "metal_nut/test").rglob("*.png"):
        p.unlink()
    shutil.rmtree(root / "metal_nut/ground_truth")
    msg = _err(lambda: load_dataset("mvtec", root).categories)
    assert "metal_nut" in msg and "no test image" in msg


def test_empty_root(tmp_path):
    msg = _err(lambda: load_dataset("mpdd", tmp_path).categories)
    assert "no category found" in msg


def test_category_without_test_folder(tmp_path):
    root = make_mvtec(tmp_path)
    shutil.rmtree(root / "bottle/test")
    msg = _err(lambda: load_dataset("mvtec", root).categories)
    assert "bottle" in msg and "without a test/" in msg


def test_duplicate_stems(tmp_path):
    root = make_mvtec(tmp_path)
    write_image(root / "bottle/test/crack/10.bmp", 24, 32)
    msg = _err(lambda: load_dataset("mvtec", root).categories)
    assert "10.bmp" in msg and "same stem" in msg


def test_ksdd_image_without_label(tmp_path):
    root = make_ksdd(tmp_path)
    (root / "kos02/Part3_label.bmp").unlink()
    msg = _err(lambda: load_dataset("ksdd", root).categories)
    assert "kos02/Part3.jpg" in msg and "label file" in msg


def test_ksdd_label_without_image(tmp_path):
    root = make_ksdd(tmp_path)
    (root / "kos01/Part4.jpg").unlink()
    msg = _err(lambda: load_dataset("ksdd", root).categories)
    assert "kos01/Part4_label.bmp" in msg and "mask without an image" in msg


def test_mtd_defect_without_mask(tmp_path):
    root = make_mtd(tmp_path)
    (root / "MT_Crack/Imgs/exp0_num_12.png").unlink()
    msg = _err(lambda: load_dataset("mtd", root).categories)
    assert "MT_Crack/Imgs/exp0_num_12.jpg" in msg and "without a mask" in msg


def test_dagm_image_not_listed(tmp_path):
    root = make_dagm(tmp_path)
    write_image(root / "Class1/Test/0099.PNG", 32, 32, grey=True)
    msg = _err(lambda: load_dataset("dagm", root).categories)
    assert "0099.PNG" in msg and "not listed" in msg


def test_dagm_misaligned_listing(tmp_path):
    root = make_dagm(tmp_path)
    listing = root / "Class2/Test/Label/Labels.txt"
    listing.write_text(listing.read_text().replace("0005.PNG\t0\t0005_label.PNG", "0005.PNG\t0\t0002_label.PNG"))
    msg = _err(lambda: load_dataset("dagm", root).categories)
    assert "0002_label.PNG" in msg and "misaligned" in msg


def test_dagm_malformed_line(tmp_path):
    root = make_dagm(tmp_path)
    listing = root / "Class1/Train/Label/Labels.txt"
    listing.write_text(listing.read_text() + "7\t2\t0007.PNG\n")
    msg = _err(lambda: load_dataset("dagm", root).categories)
    assert f"{listing}:8" in msg and "5 fields" in msg


def test_check_collects_every_problem(tmp_path):
    root = make_mvtec(tmp_path)
    (root / "bottle/ground_truth/crack/10_mask.png").unlink()  # listing problem
    (root / "metal_nut/test/scratch/7.png").unlink()  # listing problem (mask without image)
    truncate(root / "bottle/test/good/001.png")  # decode problem
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(root / "metal_nut/ground_truth/crack/100_mask.png")
    write_mask(root / "bottle/ground_truth/good/000_mask.png", "000", 24, 32)  # normal with defect pixels
    report = check_dataset("mvtec", root)
    files = sorted(p.file.split(str(root) + "/")[-1] for p in report.problems)
    assert files == ["bottle/ground_truth/good/000_mask.png", "bottle/test/crack/10.png",
                     "bottle/test/good/001.png", "metal_nut/ground_truth/crack/100_mask.png",
                     "metal_nut/ground_truth/scratch/7_mask.png"]
    assert not report.ok
    text = render_report(report)
    assert "5 problem(s)" in text and "metal_nut" in text
    d = report.to_dict()
    json.dumps(d)
    assert d["ok"] is False and len(d["problems"]) == 5
    # official counts differ for a fake copy: warned about, not an error
    assert any("official release has" in w for w in report.warnings)
    assert any("'carpet' of the official release is missing" in w for w in report.warnings)


def test_check_clean_fake_and_counts(tmp_path):
    report = check_dataset("dagm", make_dagm(tmp_path))
    assert report.ok, report.problems
    rows = {r.category: (r.normal, r.defective, r.reference) for r in report.categories}
    assert rows == {"Class1": (4, 2, 4), "Class2": (4, 2, 4)}
    assert report.kind == "texture"


def test_check_counts_empty_defect_masks(tmp_path):
    report = check_dataset("mtd", make_mtd(tmp_path))
    assert report.ok
    assert report.categories[0].empty_masks == 1
    assert any("empty mask" in w for w in report.warnings)


def test_check_missing_root(tmp_path):
    report = check_dataset("btad", tmp_path / "missing")
    assert not report.ok and "does not exist" in report.problems[0].rule
