"""SAM: tiny real-architecture models through both backends (transformers folder, segment-anything .pth
state dict), loaded back through the real loader offline; shapes, box coordinates and the empty case."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from modelzoo_helpers import random_image

from zsasbench.errors import DataError, MissingWeightsError, UserError
from zsasbench.models import ModelSpec, Runtime, availability, load
from zsasbench.models.sam import (SAM_VIT_H, TINY_SA_ARCH, Masks, SaArch, Segmenter, build_sa_sam, build_tiny_hf,
                                  infer_sa_arch, variant_of)

BOXES = np.array([[2, 3, 30, 40], [10, 12, 60, 45], [0, 0, 64, 48]], np.float32)


def _check_masks(m: Masks, n: int, h: int, w: int):
    assert isinstance(m, Masks) and len(m) == n
    assert m.masks.shape == (n, h, w) and m.masks.dtype == bool
    assert m.logits.shape == (n, h, w) and m.logits.dtype == np.float32
    assert m.iou_scores.shape == (n,) and m.iou_scores.dtype == np.float32
    np.testing.assert_array_equal(m.masks, m.logits > 0)
    assert np.isfinite(m.logits).all()


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam-hf")
    model, processor = build_tiny_hf()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, model, processor


def test_transformers_backend_from_folder(hf_folder):
    folder, model, processor = hf_folder
    seg = load(ModelSpec("sam", str(folder)), Runtime())
    assert isinstance(seg, Segmenter) and seg.backend == "transformers"
    image = random_image(48, 64)
    out = seg.segment_boxes(image, BOXES)
    _check_masks(out, 3, 48, 64)
    # the reference path: SamProcessor maps the pixel boxes itself; same logits expected
    inputs = processor(images=image, input_boxes=[BOXES.tolist()], return_tensors="pt")
    with torch.inference_mode():
        ref = model(pixel_values=inputs["pixel_values"], input_boxes=inputs["input_boxes"].float(),
                    multimask_output=False)
    ref_logits = processor.post_process_masks(ref.pred_masks, inputs["original_sizes"],
                                              inputs["reshaped_input_sizes"], binarize=False)[0][:, 0].numpy()
    np.testing.assert_allclose(out.logits, ref_logits, atol=1e-5)
    np.testing.assert_allclose(out.iou_scores, ref.iou_scores[0, :, 0].numpy(), atol=1e-6)
    # the cached embedding gives the same answer for a second call; one box alone = its row
    again = seg.segment_boxes(image, BOXES[1:2])
    np.testing.assert_allclose(again.logits[0], out.logits[1], atol=1e-5)
    other = seg.segment_boxes(random_image(48, 64, seed=9), BOXES[1:2])
    assert not np.allclose(other.logits[0], out.logits[1])  # a new image is re-encoded


def test_zero_boxes_and_bad_input(hf_folder):
    seg = load(ModelSpec("sam", str(hf_folder[0])), Runtime())
    empty = seg.segment_boxes(random_image(20, 30), np.zeros((0, 4), np.float32))
    _check_masks(empty, 0, 20, 30)
    _check_masks(seg.segment_boxes(random_image(20, 30), []), 0, 20, 30)
    with pytest.raises(UserError, match=r"\(N, 4\)"):
        seg.segment_boxes(random_image(), np.zeros((2, 3)))
    with pytest.raises(UserError, match="NaN"):
        seg.segment_boxes(random_image(), np.array([[0, 0, np.nan, 4]]))
    with pytest.raises(UserError, match="uint8"):
        seg.segment_boxes(random_image().astype(np.float32), BOXES)


@pytest.fixture(scope="module")
def sa_checkpoint(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sam-sa")
    torch.manual_seed(0)
    sam = build_sa_sam(TINY_SA_ARCH)
    path = folder / "sam_tiny_test.pth"
    torch.save(sam.state_dict(), path)
    return path, sam


def test_segment_anything_checkpoint_path(sa_checkpoint):
    from segment_anything import SamPredictor

    path, sam = sa_checkpoint
    spec = ModelSpec("sam", str(path))
    av = availability(spec)
    assert av.present and av.size_bytes == path.stat().st_size
    seg = load(spec, Runtime())
    assert seg.backend == "segment-anything"
    image = random_image(48, 64, seed=4)
    out = seg.segment_boxes(image, BOXES)
    _check_masks(out, 3, 48, 64)
    # the official predictor on the original module, one box at a time, gives the same logits
    predictor = SamPredictor(sam)
    predictor.set_image(image)
    for i, box in enumerate(BOXES):
        logits, iou, _ = predictor.predict(box=box, multimask_output=False, return_logits=True)
        np.testing.assert_allclose(out.logits[i], logits[0], atol=1e-4)
        np.testing.assert_allclose(out.iou_scores[i], iou[0], atol=1e-5)
    _check_masks(seg.segment_boxes(image, np.zeros((0, 4))), 0, 48, 64)


def test_architecture_is_read_from_official_shapes():
    from segment_anything import sam_model_registry

    with torch.device("meta"):  # shapes only: no 2.5 GB allocation
        vit_h = sam_model_registry["vit_h"]().state_dict()
        vit_b = sam_model_registry["vit_b"]().state_dict()
    assert infer_sa_arch(vit_h) == SaArch()
    arch_b = infer_sa_arch(vit_b)
    assert (arch_b.embed_dim, arch_b.depth, arch_b.num_heads, arch_b.global_attn_indexes) == (768, 12, 12, (2, 5, 8, 11))
    assert infer_sa_arch(build_sa_sam(TINY_SA_ARCH).state_dict()) == TINY_SA_ARCH


def test_variant_checks(sa_checkpoint, tmp_path):
    assert variant_of(ModelSpec("sam", "/x/sam_vit_b_01ec64.pth")) == "vit_b"
    assert variant_of(ModelSpec("sam", "/x/sam_vit_l_0b3195.pth")) == "vit_l"
    assert variant_of(ModelSpec("sam", "/x/mine.pth", variant="vit_h")) == "vit_h"
    assert variant_of(ModelSpec("sam", "/x/mine.pth")) is None
    with pytest.raises(UserError, match="unknown SAM variant"):
        variant_of(ModelSpec("sam", "/x/mine.pth", variant="vit_x"))
    wrong = tmp_path / "sam_vit_b_01ec64.pth"  # a tiny state dict under an official name
    wrong.write_bytes(sa_checkpoint[0].read_bytes())
    with pytest.raises(DataError, match="variant vit_b"):
        load(ModelSpec("sam", str(wrong)), Runtime())
    junk = tmp_path / "junk.pth"
    torch.save({"foo": torch.zeros(1)}, junk)
    with pytest.raises(DataError, match="not a segment-anything SAM state dict"):
        load(ModelSpec("sam", str(junk)), Runtime())
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="cannot read SAM checkpoint"):
        load(ModelSpec("sam", str(broken)), Runtime())


def test_missing_weights_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    with pytest.raises(MissingWeightsError) as err:
        load(SAM_VIT_H, Runtime())
    assert f"hf download facebook/sam-vit-huge --revision {SAM_VIT_H.revision}" in str(err.value)
    missing = ModelSpec("sam", str(tmp_path / "sam_vit_h_4b8939.pth"))
    with pytest.raises(MissingWeightsError) as err:
        load(missing, Runtime())
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_h_4b8939.pth" in str(err.value)
    assert str(tmp_path / "sam_vit_h_4b8939.pth") in str(err.value)


def test_tiny_random_profiles():
    hf = load(SAM_VIT_H, Runtime(profile="tiny-random"))
    sa = load(ModelSpec("sam", "/nowhere/sam_vit_h_4b8939.pth"), Runtime(profile="tiny-random"))
    assert hf.backend == "transformers" and sa.backend == "segment-anything"
    image = random_image(30, 40, seed=5)
    for seg in (hf, sa):
        _check_masks(seg.segment_boxes(image, BOXES[:2]), 2, 30, 40)
    again = load(SAM_VIT_H, Runtime(profile="tiny-random", device="auto"))  # another runtime: rebuilt, same seed
    np.testing.assert_array_equal(again.segment_boxes(image, BOXES[:2]).logits,
                                  hf.segment_boxes(image, BOXES[:2]).logits)
