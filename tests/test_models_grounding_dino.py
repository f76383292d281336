"""Grounding DINO: post-processing on hand-built scores, NMS, and a tiny real-architecture model
saved with save_pretrained and loaded back through the real loader (offline)."""
from __future__ import annotations

import numpy as np
import pytest
from modelzoo_helpers import fake_hub_snapshot, random_image

from zsasbench.errors import MissingWeightsError, UserError
from zsasbench.models import ModelSpec, Runtime, availability, load
from zsasbench.models.grounding_dino import (GROUNDING_DINO_TINY, Detections, GroundingDino, box_iou, build_tiny,
                                             format_prompt, nms, phrase_spans, postprocess, preprocess_caption,
                                             tiny_vocab)

# ------------------------------------------------------------------ NMS and IoU (hand-built)


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10]], np.float32)
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 0, 0]], np.float32)
    np.testing.assert_allclose(box_iou(a, b)[0], [1.0, 50 / 150, 0.0, 0.0])


def test_nms_suppresses_overlaps_in_score_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [20, 20, 30, 30], [0, 0, 10, 9]], np.float32)
    scores = np.array([0.5, 0.9, 0.3, 0.8], np.float32)
    # box1 (0.9) keeps; box3 overlaps box1 by IoU 0.57 -> gone; box0 overlaps box1 by 0.68 -> gone
    assert nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert nms(boxes, scores, 0.99).tolist() == [1, 3, 0, 2]  # nothing overlaps that much


def test_nms_threshold_is_strict_and_ties_keep_lower_index():
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10]], np.float32)  # IoU exactly 1/3
    scores = np.array([0.7, 0.7], np.float32)
    assert nms(boxes, scores, 1 / 3 + 1e-9).tolist() == [0, 1]
    assert nms(boxes, scores, 1 / 3 - 1e-6).tolist() == [0]  # tie: the first box wins
    assert nms(boxes[::-1], scores, 0.2).tolist() == [0]


def test_nms_matches_torchvision_on_random_boxes():
    torchvision = pytest.importorskip("torchvision")
    import torch

    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 100, (200, 2))
    wh = rng.uniform(1, 40, (200, 2))
    boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
    scores = rng.permutation(200).astype(np.float32) / 200  # distinct scores: order fully defined
    for thr in (0.1, 0.5, 0.8):
        ref = torchvision.ops.nms(torch.from_numpy(boxes), torch.from_numpy(scores), thr).numpy()
        assert nms(boxes, scores, thr).tolist() == ref.tolist()


def test_nms_edge_cases():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).tolist() == []
    with pytest.raises(UserError, match="3 boxes but 2 scores"):
        nms(np.zeros((3, 4)), np.zeros(2), 0.5)
    with pytest.raises(UserError, match="outside"):
        nms(np.zeros((1, 4)), np.zeros(1), 1.5)


# ------------------------------------------------------------------ prompt and phrases

def test_prompt_helpers():
    assert preprocess_caption("  Crack . Hole ") == "crack . hole."
    assert preprocess_caption("crack .") == "crack ."
    assert format_prompt(["Crack", " scratch ", "", "metal screw"]) == "crack . scratch . metal screw ."
    with pytest.raises(UserError):
        preprocess_caption("   ")
    with pytest.raises(UserError):
        format_prompt(["", " "])
    tokens = ["[CLS]", "crack", ".", "metal", "sc", "##rew", ".", "[SEP]"]
    assert phrase_spans(tokens) == [("crack", 1, 2), ("metal screw", 3, 6)]


@pytest.fixture(scope="module")
def tokenizer():
    from transformers import BertTokenizer

    return BertTokenizer(vocab=tiny_vocab(), do_lower_case=True)


def test_postprocess_thresholds_boxes_and_phrases(tokenizer):
    caption = "crack . hole ."
    ids = tokenizer(caption)["input_ids"]
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens == ["[CLS]", "crack", ".", "hole", ".", "[SEP]"]
    probs = np.array([
        [0.0, 0.90, 0.10, 0.30, 0.0, 0.95],  # crack strong, hole weak, [SEP] highest
        [0.0, 0.10, 0.00, 0.50, 0.0, 0.00],  # exactly at box threshold: dropped (strict >)
        [0.0, 0.20, 0.00, 0.60, 0.0, 0.00],  # hole
        [0.0, 0.05, 0.00, 0.05, 0.0, 0.00],  # below box threshold
    ], np.float32)
    boxes = np.array([[0.5, 0.5, 0.2, 0.4], [0.5, 0.5, 0.1, 0.1], [0.1, 0.9, 0.4, 0.4], [0.5, 0.5, 1, 1]])
    det = postprocess(probs, boxes, ids, tokenizer, (100, 200), box_threshold=0.5, text_threshold=0.25)
    assert isinstance(det, Detections) and len(det) == 2
    np.testing.assert_allclose(det.scores, [0.95, 0.6])  # sorted by score
    # cxcywh normalised -> xyxy pixels of a 100x200 (HxW) image, clipped to the image
    np.testing.assert_allclose(det.boxes, [[80, 30, 120, 70], [0, 70, 60, 100]])
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32
    assert det.phrases == ["crack hole", "hole"]  # [SEP] never part of a phrase; combined phrases kept
    assert det.token_logits.shape == (2, 6) and det.tokens == tokens
    names, table = det.phrase_scores()
    assert names == ["crack", "hole"]
    np.testing.assert_allclose(table, [[0.9, 0.3], [0.2, 0.6]])
    combined = postprocess(probs, boxes, ids, tokenizer, (100, 200), 0.5, 0.25, remove_combined=True)
    # official rule: the span between the separators around the best token; the first box's best token
    # is [SEP], whose span (after the last ".") is empty
    assert combined.phrases == ["", "hole"]
    probs[0, 2] = 0.99  # best token now the "." closing "crack": the phrase ending at it
    assert postprocess(probs, boxes, ids, tokenizer, (100, 200), 0.5, 0.25, remove_combined=True).phrases[0] == "crack"
    raw = postprocess(probs, boxes, ids, tokenizer, (100, 200), 0.5, 0.25, clip_boxes=False)
    np.testing.assert_allclose(raw.boxes[1], [-20, 70, 60, 110])  # as predicted, outside the image
    high_text = postprocess(probs, boxes, ids, tokenizer, (100, 200), 0.5, 0.95)
    assert high_text.phrases == ["", ""]


def test_postprocess_nms_and_empty(tokenizer):
    ids = tokenizer("crack .")["input_ids"]
    probs = np.array([[0, 0.9, 0, 0], [0, 0.8, 0, 0], [0, 0.7, 0, 0]], np.float32)
    boxes = np.array([[0.5, 0.5, 0.5, 0.5], [0.51, 0.5, 0.5, 0.5], [0.1, 0.1, 0.1, 0.1]])
    det = postprocess(probs, boxes, ids, tokenizer, (50, 50), 0.3, 0.3, nms_iou=0.5)
    np.testing.assert_allclose(det.scores, [0.9, 0.7])
    assert det.phrases == ["crack", "crack"] and det.token_logits.shape == (2, 4)
    none = postprocess(probs, boxes, ids, tokenizer, (50, 50), 0.95, 0.3, nms_iou=0.5)
    assert none.boxes.shape == (0, 4) and none.token_logits.shape == (0, 4) and none.phrases == []
    assert none.phrase_scores()[1].shape == (0, 1)


# ------------------------------------------------------------------ tiny real-architecture model

@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gd-tiny")
    model, processor = build_tiny()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder, GroundingDino(model, processor)


def test_tiny_model_loads_from_folder_and_detects(tiny_folder):
    folder, reference = tiny_folder
    gd = load(ModelSpec("grounding-dino", str(folder)), Runtime())
    assert isinstance(gd, GroundingDino) and gd is not reference
    image = random_image(90, 130)
    det = gd.detect(image, "crack . metal screw", box_threshold=0.3, text_threshold=0.3)
    n, t = len(det), len(det.tokens)
    assert det.tokens[0] == "[CLS]" and det.tokens[-1] == "[SEP]"
    assert det.boxes.shape == (n, 4) and det.scores.shape == (n,) and det.token_logits.shape == (n, t)
    assert det.token_logits.dtype == np.float32 and len(det.phrases) == n
    assert np.all(det.scores > 0.3) and np.all(np.diff(det.scores) <= 0)
    np.testing.assert_allclose(det.scores, det.token_logits.max(1))
    assert np.all(det.boxes[:, [0, 2]] <= 130) and np.all(det.boxes[:, [1, 3]] <= 90) and np.all(det.boxes >= 0)
    assert np.all(det.boxes[:, 2] >= det.boxes[:, 0]) and np.all(det.boxes[:, 3] >= det.boxes[:, 1])
    # the loaded model is the saved one: identical detections; and deterministic
    ref = reference.detect(image, "crack . metal screw", 0.3, 0.3)
    np.testing.assert_array_equal(det.boxes, ref.boxes)
    np.testing.assert_array_equal(det.token_logits, ref.token_logits)
    assert det.phrases == ref.phrases
    # NMS only removes boxes, keeps order, leaves no pair above the IoU
    kept = gd.detect(image, "crack . metal screw", 0.3, 0.3, nms_iou=0.5)
    assert len(kept) <= n and set(map(tuple, kept.boxes.tolist())) <= set(map(tuple, det.boxes.tolist()))
    iou = box_iou(kept.boxes, kept.boxes)
    assert np.all(iou[np.triu_indices(len(kept), 1)] <= 0.5)
    everything = gd.detect(image, "crack", 0.0, 0.0)
    assert len(everything) == gd.model.config.num_queries  # box_threshold 0: every query


def test_tiny_model_loads_by_hub_id_from_cache(tiny_folder, tmp_path, monkeypatch):
    folder, reference = tiny_folder
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    rev = "1" * 40
    snap = fake_hub_snapshot(tmp_path, "test-org/gd-tiny", rev)
    for f in folder.iterdir():
        (snap / f.name).write_bytes(f.read_bytes())
    spec = ModelSpec("grounding-dino", "test-org/gd-tiny", revision=rev)
    av = availability(spec)
    assert av.present and av.location == str(snap) and av.size_bytes > 0
    gd = load(spec, Runtime(device="auto"))
    image = random_image(40, 40, seed=1)
    np.testing.assert_array_equal(gd.detect(image, "hole", 0.2, 0.2).token_logits,
                                  reference.detect(image, "hole", 0.2, 0.2).token_logits)


def test_missing_default_model_reports_command_before_loading(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    av = availability(GROUNDING_DINO_TINY)
    assert not av.present
    with pytest.raises(MissingWeightsError) as err:
        load(GROUNDING_DINO_TINY, Runtime())
    msg = str(err.value)
    assert "IDEA-Research/grounding-dino-tiny" in msg
    assert f"hf download IDEA-Research/grounding-dino-tiny --revision {GROUNDING_DINO_TINY.revision}" in msg


def test_bad_inputs(tiny_folder, tmp_path):
    _, gd = tiny_folder
    with pytest.raises(UserError, match="HxWx3 uint8"):
        gd.detect(np.zeros((10, 10), np.uint8), "crack", 0.3, 0.3)
    with pytest.raises(UserError, match="box_threshold 1.5 is outside"):
        gd.detect(random_image(), "crack", 1.5, 0.3)
    with pytest.raises(UserError, match="max_text_len"):
        gd.detect(random_image(), " . ".join(["scratch"] * 80), 0.3, 0.3)
    file = tmp_path / "groundingdino_swint_ogc.pth"
    file.write_bytes(b"0")
    with pytest.raises(UserError, match="model folder"):
        load(ModelSpec("grounding-dino", str(file)), Runtime())


def test_tiny_random_profile_is_deterministic():
    a = load(GROUNDING_DINO_TINY, Runtime(profile="tiny-random"))
    b, _ = build_tiny()
    assert isinstance(a, GroundingDino) and a.source == "tiny-random"
    image = random_image(64, 64, seed=2)
    np.testing.assert_array_equal(a.detect(image, "crack", 0.0, 0.0).token_logits,
                                  GroundingDino(b, a.processor).detect(image, "crack", 0.0, 0.0).token_logits)
