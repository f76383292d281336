"""The MTD loader on the real sample (../shared/data/mtd-sample, 229 images in the official layout)."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

from zsasbench.datasets import load_dataset
from zsasbench.datasets.check import check_dataset

# Per class: every third image of each defect class, every tenth of MT_Free (sample README).
SAMPLE_COUNTS = {"MT_Blowhole": 39, "MT_Break": 29, "MT_Crack": 19, "MT_Fray": 11, "MT_Free": 96, "MT_Uneven": 35}


def test_mtd_sample_counts_pairing_labels_masks(mtd_sample):
    ds = load_dataset("mtd", mtd_sample)
    assert ds.categories == ["magnetic_tile"]
    test, refs = ds.test_samples("magnetic_tile"), ds.reference_samples("magnetic_tile")
    everything = test + refs
    assert Counter(s.id.split("/")[0] for s in everything) == SAMPLE_COUNTS
    assert len(everything) == 229
    # references: normal, from MT_Free, not in the test set
    assert refs and all(s.id.startswith("MT_Free/") and s.label == 0 for s in refs)
    assert not {s.id for s in refs} & {s.id for s in test}
    for s in test:
        cls = s.id.split("/")[0]
        # pairing: the mask is the same-stem .png beside the image
        assert s.mask_path.parent == s.image_path.parent
        assert (s.image_path.stem, s.image_path.suffix, s.mask_path.suffix) == (s.mask_path.stem, ".jpg", ".png")
        img, mask = s.image, s.mask
        assert mask.shape == img.shape[:2] and mask.dtype == bool
        with Image.open(s.image_path) as im:
            assert mask.shape == (im.height, im.width)  # (H, W), never (W, H)
        raw = np.asarray(Image.open(s.mask_path).convert("L"))
        np.testing.assert_array_equal(mask, raw > 127)
        if cls == "MT_Free":
            assert s.label == 0 and not mask.any()
        else:
            assert s.label == 1  # every defect-class image, empty mask or not
        s.release()
    # the sample has one defect-class image with an empty mask (MT_Uneven)
    empty = [s.id for s in test if s.label == 1 and not s.mask.any()]
    assert len(empty) == 1 and empty[0].startswith("MT_Uneven/")


def test_mtd_sample_non_square_sizes(mtd_sample):
    ds = load_dataset("mtd", mtd_sample)
    shapes = {s.image.shape[:2] for s in ds.test_samples("magnetic_tile")[:40]}
    assert any(h != w for h, w in shapes) and len(shapes) > 10


def test_mtd_sample_check(mtd_sample):
    report = check_dataset("mtd", mtd_sample)
    assert report.ok, report.problems
    row = report.categories[0]
    assert row.normal + row.reference == 96 and row.defective == 133 and row.empty_masks == 1
    assert Path(report.root) == mtd_sample
