"""Each benchmark loader on a tiny fake copy of its official layout: categories, pairing, labels,
mask shapes (H, W) and splits."""
from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fake_datasets import (DAGM_HW, KSDD_DEFECTIVE, KSDD_HW, MTD_FILES, MVTEC_STEMS, expected_mask, make_btad,
                           make_dagm, make_dtd, make_ksdd, make_mpdd, make_mtd, make_mvtec, make_mvtec_tree)
from zsasbench.datasets import load_dataset
from zsasbench.datasets.common import hash_unit, reference_ids


def _check_masks(samples, key=lambda s: Path(s.image_path).stem):
    """Every sample decodes to HxWx3 / HxW bool; defective masks are their own stem's box."""
    for s in samples:
        img, mask = s.image, s.mask
        assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
        assert mask.dtype == bool and mask.shape == img.shape[:2]
        if s.label == 1:
            np.testing.assert_array_equal(mask, expected_mask(key(s), *mask.shape), err_msg=s.id)
        else:
            assert not mask.any(), s.id


def _no_overlap(ds, cat):
    test_ids = {s.id for s in ds.test_samples(cat)}
    ref_ids = {s.id for s in ds.reference_samples(cat)}
    assert not test_ids & ref_ids
    assert all(s.label == 0 for s in ds.reference_samples(cat))


@pytest.mark.parametrize("name,make,cats,defects,obj", [
    ("mvtec", make_mvtec, ["bottle", "metal_nut"], 2, {"metal_nut": "metal nut"}),
    ("mpdd", make_mpdd, ["bracket_black", "tubes"], 1, {"bracket_black": "black metal bracket"}),
    ("dtd-synthetic", make_dtd, ["Blotchy_099", "Woven_001"], 1, {"Blotchy_099": "blotchy texture"}),
])
def test_mvtec_like(tmp_path, name, make, cats, defects, obj):
    ds = load_dataset(name, make(tmp_path))
    assert ds.categories == cats
    for cat in cats:
        test = ds.test_samples(cat)
        assert sum(s.label == 0 for s in test) == 2
        assert sum(s.label == 1 for s in test) == defects * len(MVTEC_STEMS)
        assert len(ds.reference_samples(cat)) == 3
        assert all("/train/good/" in f"/{s.id}" for s in ds.reference_samples(cat))
        assert all(s.id.startswith(f"{cat}/test/") for s in test)
        _no_overlap(ds, cat)
        _check_masks(test)
    for cat, want in obj.items():
        assert ds.object_name(cat) == want
    assert ds.kind == ("texture" if name == "dtd-synthetic" else "object")


def test_mvtec_pairs_by_stem_not_position(tmp_path):
    # Stems 7, 10, 100 sort as 10, 100, 7 but their masks as 100_mask, 10_mask, 7_mask: pairing by
    # sorted position would give image 10 the mask of 100. Each must get its own.
    ds = load_dataset("mvtec", make_mvtec(tmp_path))
    pairs = {s.image_path.name: s.mask_path.name for s in ds.test_samples("bottle") if s.label == 1}
    assert pairs["10.png"] == "10_mask.png" and pairs["100.png"] == "100_mask.png"
    assert pairs["7.png"] == "7_mask.png"


def test_loading_is_lazy(tmp_path, monkeypatch):
    import zsasbench.datasets.base as base
    calls = []
    monkeypatch.setattr(base, "read_image", lambda p: calls.append(p))
    ds = load_dataset("mvtec", make_mvtec(tmp_path))
    ds.test_samples("bottle")
    assert calls == []


def test_btad_mixed_extensions(tmp_path):
    ds = load_dataset("btad", make_btad(tmp_path))
    assert ds.categories == ["01", "03"]
    test01 = ds.test_samples("01")
    assert {s.mask_path.suffix for s in test01 if s.label} == {".png"}
    assert {s.image_path.suffix for s in test01} == {".bmp"}
    test03 = ds.test_samples("03")
    assert {s.mask_path.suffix for s in test03 if s.label} == {".bmp"}
    for cat in ("01", "03"):
        t = ds.test_samples(cat)
        assert (sum(s.label == 0 for s in t), sum(s.label for s in t)) == (2, 3)
        assert len(ds.reference_samples(cat)) == 3
        _check_masks(t)
    assert ds.test_samples("03")[0].image.shape[:2] == (24, 32)
    assert ds.kind == "object"


def test_ksdd_official(tmp_path):
    ds = load_dataset("ksdd", make_ksdd(tmp_path))
    assert ds.categories == ["electrical_commutator"]
    cat = "electrical_commutator"
    test, refs = ds.test_samples(cat), ds.reference_samples(cat)
    assert len(test) + len(refs) == 24
    # label by mask content
    assert {tuple(s.id.split("/")[0:1]) + (Path(s.id).stem,) for s in test if s.label} == KSDD_DEFECTIVE
    # split: the hash rule, references normal and out of the test set
    normal_ids = [s.id for s in test + refs if s.label == 0]
    assert {s.id for s in refs} == reference_ids(normal_ids)
    _no_overlap(ds, cat)
    _check_masks(test, key=lambda s: f"{Path(s.id).parent.name}/{Path(s.id).stem}")
    img = test[0].image
    assert img.shape[:2] == KSDD_HW  # greyscale jpg decoded to H x W x 3
    assert ds.object_name(cat) == "electrical commutator" and ds.kind == "texture"


def test_reference_split_is_stable_under_subsetting(tmp_path):
    ids = [f"MT_Free/Imgs/exp1_num_{i}.jpg" for i in range(300)]
    full = reference_ids(ids)
    assert 0.04 < len(full) / len(ids) < 0.18  # about REFERENCE_FRACTION
    rng = np.random.default_rng(0)
    for _ in range(20):
        subset = list(rng.choice(ids, size=60, replace=False))
        if full & set(subset):  # per-image rule: a subset keeps exactly its own references
            assert reference_ids(subset) == full & set(subset)
    # the same on disk: one KSDD folder copied out of a larger copy
    make_ksdd(tmp_path / "full", n_folders=3)
    shutil.copytree(tmp_path / "full" / "kos02", tmp_path / "sub" / "kos02")
    full_ds, sub_ds = load_dataset("ksdd", tmp_path / "full"), load_dataset("ksdd", tmp_path / "sub")
    cat = "electrical_commutator"
    want = {s.id for s in full_ds.reference_samples(cat) if s.id.startswith("kos02/")}
    got = {s.id for s in sub_ds.reference_samples(cat)}
    assert got == want or (not want and len(got) == 1)  # fallback: one reference when none is chosen
    assert hash_unit("kos01/Part0.jpg") == hash_unit("kos01/Part0.jpg") and 0 <= hash_unit("x") < 1


def test_mtd_official(tmp_path):
    ds = load_dataset("mtd", make_mtd(tmp_path))
    cat = "magnetic_tile"
    assert ds.categories == [cat]
    test, refs = ds.test_samples(cat), ds.reference_samples(cat)
    assert len(test) + len(refs) == sum(len(v) for v in MTD_FILES.values())
    for s in test:
        cls = s.id.split("/")[0]
        assert s.label == (0 if cls == "MT_Free" else 1)  # label by folder
        assert s.mask_path.stem == s.image_path.stem and s.mask_path.parent == s.image_path.parent
    # the defect-class image with an empty mask is defective with an all-False mask
    empty = next(s for s in test if s.image_path.stem == "exp1_num_500")
    assert empty.label == 1 and not empty.mask.any()
    assert empty.mask.shape == (19, 33)
    for s in test:
        if s.label == 1 and s.image_path.stem != "exp1_num_500":
            np.testing.assert_array_equal(s.mask, expected_mask(s.image_path.stem, *s.mask.shape))
        if s.label == 0:
            assert s.mask.shape == s.image.shape[:2] and not s.mask.any()
    assert all(s.id.startswith("MT_Free/") for s in refs) and refs
    _no_overlap(ds, cat)
    assert ds.object_name(cat) == "magnetic tile"


def test_dagm_official(tmp_path):
    ds = load_dataset("dagm", make_dagm(tmp_path))
    assert ds.categories == ["Class1", "Class2"]
    for cat in ds.categories:
        test = ds.test_samples(cat)
        assert all(s.id.startswith(f"{cat}/Test/") for s in test)
        assert {s.image_path.stem for s in test if s.label} == {"0002", "0005"}
        assert len(test) == 6
        refs = ds.reference_samples(cat)
        assert len(refs) == 4 and all(s.id.startswith(f"{cat}/Train/") and s.label == 0 for s in refs)
        _check_masks(test, key=lambda s: f"{cat}/Test/{s.image_path.stem}")
        assert test[0].mask.shape == DAGM_HW
    assert ds.object_name("Class1") == "textured surface"


def test_dagm_without_labels_txt_pairs_by_stem(tmp_path):
    root = make_dagm(tmp_path)
    for p in root.rglob("Labels.txt"):
        p.unlink()
    ds = load_dataset("dagm", root)
    assert {s.image_path.stem for s in ds.test_samples("Class1") if s.label} == {"0002", "0005"}


@pytest.mark.parametrize("name", ["ksdd", "mtd", "dagm"])
def test_mvtec_style_repackaging_detected(tmp_path, name):
    cat = {"ksdd": "kolektor", "mtd": "magnetic_tile", "dagm": "Class1"}[name]
    root = make_mvtec_tree(tmp_path, (cat,), hw=(20, 28), defects=("defect",), n_train=0, n_test_good=12,
                           grey=True)
    ds = load_dataset(name, root)
    assert ds.categories == [cat]
    test, refs = ds.test_samples(cat), ds.reference_samples(cat)
    assert sum(s.label for s in test) == 3 and len(test) + len(refs) == 15
    assert refs and all("/test/good/" in s.id for s in refs)  # no train/good: hash split of test/good
    _no_overlap(ds, cat)
    _check_masks(test)


def test_repackaging_with_train_good_uses_it(tmp_path):
    root = make_mvtec_tree(tmp_path, ("magnetic_tile",), defects=("Crack",), n_train=2)
    ds = load_dataset("mtd", root)
    assert [s.id for s in ds.reference_samples("magnetic_tile")] == [
        "magnetic_tile/train/good/000.png", "magnetic_tile/train/good/001.png"]
    assert len(ds.test_samples("magnetic_tile")) == 5


def test_load_resized_matches_arrays_and_checks(tmp_path):
    from PIL import Image

    from fake_datasets import truncate
    from zsasbench.datasets.common import load_resized
    from zsasbench.errors import DataError

    root = make_mvtec(tmp_path)
    ds = load_dataset("mvtec", root)
    for s in ds.test_samples("bottle"):
        img, mask = load_resized(s, (40, 50))
        assert img.shape == (40, 50, 3) and img.dtype == np.uint8 and mask.shape == (40, 50)
        want = np.asarray(Image.fromarray(s.mask.view(np.uint8)).resize((50, 40), Image.NEAREST)) > 0
        np.testing.assert_array_equal(mask, want)
        np.testing.assert_array_equal(img, np.asarray(Image.fromarray(s.image).resize((50, 40), Image.BILINEAR)))
    bad_mask = root / "bottle/ground_truth/crack/7_mask.png"
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(bad_mask)
    s = next(s for s in ds.test_samples("bottle") if s.mask_path == bad_mask)
    with pytest.raises(DataError, match="7_mask.png: mask is 10x10 .* must have its image's size"):
        load_resized(s, (40, 50))
    truncate(s.image_path)
    with pytest.raises(DataError, match="7.png: unreadable or truncated image"):
        load_resized(s, (40, 50))


@settings(max_examples=60, deadline=None)
@given(stems=st.sets(st.text("0123456789ab", min_size=1, max_size=4), min_size=1, max_size=12),
       data=st.data(), lenient=st.booleans())
def test_pair_masks_matches_by_stem_whatever_the_order(stems, data, lenient):
    from zsasbench.datasets.common import Issues, pair_masks

    stems = sorted(stems)
    with_mask = data.draw(st.lists(st.sampled_from(stems), unique=True))
    order = data.draw(st.permutations(with_mask))
    images = [Path(f"/d/test/x/{s}.png") for s in data.draw(st.permutations(stems))]
    masks = [Path(f"/d/ground_truth/x/{s}_mask.png") for s in order]
    pairs = pair_masks(images, masks, None if lenient else ("_mask",), Issues())
    assert {i.stem: m.stem for i, m in pairs.items()} == {s: f"{s}_mask" for s in with_mask}
