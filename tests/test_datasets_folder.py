"""The folder dataset (your own images): with and without masks, with and without train/good,
several categories, a flat unlabelled folder, and its errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from fake_datasets import expected_mask, make_mvtec_tree, truncate, write_image, write_mask
from zsasbench.datasets import load_dataset
from zsasbench.datasets.check import check_dataset
from zsasbench.datasets.common import UNLABELLED
from zsasbench.datasets.folder import FolderDataset, unlabelled_samples
from zsasbench.errors import DataError


def _tree(root, **kw):
    """A single-product tree PATH/test/..., PATH/ground_truth/..., PATH/train/good/..."""
    make_mvtec_tree(root.parent, (root.name,), hw=(18, 26), defects=("dent", "scratch"), **kw)
    return root


def test_single_tree_with_masks_and_references(tmp_path):
    root = _tree(tmp_path / "bracket")
    ds = FolderDataset(root, object_name="metal bracket")
    assert ds.categories == ["bracket"]
    test, refs = ds.test_samples("bracket"), ds.reference_samples("bracket")
    assert (sum(s.label == 0 for s in test), sum(s.label == 1 for s in test), len(refs)) == (2, 6, 3)
    assert ds.has_masks("bracket")
    assert ds.object_name("bracket") == "metal bracket" and ds.kind == "object"
    for s in test:
        want = expected_mask(s.image_path.stem, 18, 26) if s.label else np.zeros((18, 26), bool)
        np.testing.assert_array_equal(s.mask, want)


def test_lenient_mask_names(tmp_path):
    root = tmp_path / "part"
    for stem in ("img7", "img70", "a_b"):
        write_image(root / "test/dent" / f"{stem}.png", 16, 20)
    write_mask(root / "ground_truth/dent/img7-gt.png", "img7", 16, 20)
    write_mask(root / "ground_truth/dent/img70_mask.png", "img70", 16, 20)
    write_mask(root / "ground_truth/dent/a_b_mask.png", "a_b", 16, 20)
    ds = FolderDataset(root)
    pairs = {s.image_path.stem: s.mask_path.name for s in ds.test_samples("part")}
    assert pairs == {"img7": "img7-gt.png", "img70": "img70_mask.png", "a_b": "a_b_mask.png"}


def test_without_masks_scores_image_level_only(tmp_path):
    root = _tree(tmp_path / "widget")
    shutil.rmtree(root / "ground_truth")
    ds = load_dataset("folder", root)
    assert not ds.has_masks("widget")
    assert sum(s.label for s in ds.test_samples("widget")) == 6


def test_without_train_good(tmp_path):
    root = _tree(tmp_path / "widget", n_train=0)
    ds = FolderDataset(root, kind="texture")
    assert ds.reference_samples("widget") == [] and ds.kind == "texture"


def test_several_categories(tmp_path):
    make_mvtec_tree(tmp_path, ("a", "b"), hw=(10, 14))
    ds = FolderDataset(tmp_path)
    assert ds.categories == ["a", "b"]


def test_flat_unlabelled_folder(tmp_path):
    for i in range(3):
        write_image(tmp_path / "shots" / f"{i}.jpg", 12, 17)
    ds = FolderDataset(tmp_path / "shots", object_name="pcb")
    samples = ds.test_samples("shots")
    assert [s.label for s in samples] == [UNLABELLED] * 3 and all(s.mask_path is None for s in samples)
    assert samples[0].image.shape == (12, 17, 3)
    assert not ds.has_masks("shots")
    report = check_dataset("folder", tmp_path / "shots")
    assert report.ok and report.categories[0].unlabelled == 3
    assert ds.counts("shots").normal == 0 and ds.counts("shots").defective == 0


def test_partial_masks_are_an_error(tmp_path):
    root = _tree(tmp_path / "widget")
    (root / "ground_truth/dent/10_mask.png").unlink()
    with pytest.raises(DataError, match=r"widget/test/dent/10.png: defective image without a mask"):
        FolderDataset(root).categories


def test_mask_without_image(tmp_path):
    root = _tree(tmp_path / "widget")
    write_mask(root / "ground_truth/dent/55_mask.png", "55", 18, 26)
    with pytest.raises(DataError, match=r"55_mask.png: mask without an image"):
        FolderDataset(root).categories


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no image found"):
        FolderDataset(tmp_path / "empty").categories


def test_unreadable_image_is_named(tmp_path):
    bad = write_image(tmp_path / "shots" / "broken.png", 12, 17)
    truncate(bad)
    ds = FolderDataset(tmp_path / "shots")
    with pytest.raises(DataError, match="broken.png: unreadable or truncated"):
        ds.test_samples("shots")[0].image


def test_unlabelled_samples_from_files(tmp_path):
    a = write_image(tmp_path / "a.png", 8, 9)
    samples = unlabelled_samples([a], root=tmp_path)
    assert samples[0].id == "a.png" and samples[0].label == UNLABELLED
    with pytest.raises(DataError, match="no such image file"):
        unlabelled_samples([tmp_path / "missing.png"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(DataError, match="not an image file"):
        unlabelled_samples([tmp_path / "notes.txt"])


def test_bad_kind(tmp_path):
    with pytest.raises(DataError, match="kind"):
        FolderDataset(tmp_path, kind="objekt")


def test_loose_image_next_to_test_folder(tmp_path):
    root = _tree(tmp_path / "widget")
    write_image(root / "stray.png", 18, 26)
    with pytest.raises(DataError, match="stray.png: image directly in a folder that holds test/"):
        FolderDataset(root).categories
