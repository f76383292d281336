"""SAA+ adapter: box filters, top-k fusion, saliency pieces, prompt tables and the method contract."""
from __future__ import annotations

import json

import numpy as np
import pytest

from zsasbench.errors import UserError
from zsasbench.methods import saa_plus_prompts as P
from zsasbench.methods.saa_regularisation import (CaptionDetections, _cross_object_best_similarity,
                                                  decode_phrase, defect_area_limit, denormalise_boxes,
                                                  hybrid_regularisation, regularise, run_pass, select_boxes)

TOKENS = ["[CLS]", "defect", "on", "tile", ".", "[SEP]"]


def _scores(rows):
    """Token scores (N, 6) from {token position: score} per box."""
    out = np.zeros((len(rows), len(TOKENS)), np.float32)
    for i, row in enumerate(rows):
        for pos, s in row.items():
            out[i, pos] = s
    return out


# ------------------------------------------------------------------ box selection (area filter)
def test_area_filter_is_strict_on_both_sides_and_in_float32():
    boxes = np.array([[0.5, 0.5, 0.5, 0.5],    # area 0.25 == max: dropped (strict <)
                      [0.5, 0.5, 0.5, 0.4],    # 0.2: kept
                      [0.5, 0.5, 0.0, 0.3],    # 0: dropped (strict > min_area 0)
                      [0.5, 0.5, 0.9, 0.9]],   # too large
                     np.float32)
    det = CaptionDetections(boxes, _scores([{1: 0.5}] * 4), TOKENS, "tile")
    sel = select_boxes(det, 0.1, 0.1, max_area=0.25)
    assert sel.kept.tolist() == [1]
    # a float32 area below a float64 limit that rounds onto it in float32 is not below it (reference semantics)
    det = CaptionDetections(np.array([[0.5, 0.5, 1.0, 0.1]], np.float32), _scores([{1: 0.5}]), TOKENS, None)
    limit = 0.100000002
    assert float(np.float32(0.1)) < limit and np.float32(limit) == np.float32(0.1)
    assert select_boxes(det, 0.1, 0.1, max_area=limit).kept.tolist() == []
    assert select_boxes(det, 0.1, 0.1, max_area=0.10000001).kept.tolist() == [0]


def test_score_threshold_is_strict_and_uses_best_token():
    boxes = np.full((3, 4), 0.1, np.float32)
    det = CaptionDetections(boxes, _scores([{1: 0.1}, {2: 0.05, 3: 0.3}, {1: 0.09}]), TOKENS, None)
    sel = select_boxes(det, 0.1, 0.1, max_area=1.0)
    assert sel.kept.tolist() == [1]
    assert sel.scores.dtype == np.float64 and sel.scores[0] == np.float64(np.float32(0.3))


def test_filter_word_is_a_substring_test_on_the_phrase():
    boxes = np.full((4, 4), 0.1, np.float32)
    tokens = ["[CLS]", "defect", "on", "tile", "##s", ".", "[SEP]"]
    scores = np.zeros((4, len(tokens)), np.float32)
    scores[0, 1] = 0.4                      # "defect"
    scores[1, [1, 3]] = 0.4                 # "defect tile" -> dropped
    scores[2, [3, 4]] = [0.05, 0.4]         # "##s" alone stays "##s" (as BERT decodes it) -> kept
    scores[3, [3, 4]] = 0.4                 # "tiles" contains "tile" -> dropped
    sel = select_boxes(CaptionDetections(boxes, scores, tokens, "tile"), 0.1, 0.1, max_area=1.0)
    assert sel.phrases == ["defect", "defect tile", "##s", "tiles"]
    assert sel.kept.tolist() == [0, 2]
    assert select_boxes(CaptionDetections(boxes, scores, tokens, None), 0.1, 0.1, 1.0).kept.tolist() == [0, 1, 2, 3]


def test_decode_phrase_joins_wordpieces_and_punctuation():
    toks = ["[CLS]", "metal", "_", "nut", ",", "scratch", "##es", "."]
    assert decode_phrase(toks, np.array([0, 1, 0, 0, 1, 1, 1, 1], bool)) == "metal, scratches."
    with pytest.raises(ValueError, match="only 2 tokens"):
        decode_phrase(["a", "b"], np.array([0, 0, 1], bool))


def test_run_pass_concatenates_in_prompt_order_and_tracks_largest_box():
    a = CaptionDetections(np.array([[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]], np.float32),
                          _scores([{1: 0.3}, {1: 0.5}]), TOKENS, "tile")
    b = CaptionDetections(np.zeros((0, 4), np.float32), np.zeros((0, 6), np.float32), TOKENS, "tile")
    c = CaptionDetections(np.array([[0.5, 0.5, 0.4, 0.5]], np.float32), _scores([{1: 0.2}]), TOKENS, "tile")
    r = run_pass([a, b, c], (100, 200), 0.1, 0.1, max_area=1.0)
    assert r.src.tolist() == [[0, 0], [0, 1], [2, 0]]
    np.testing.assert_allclose(r.scores, [0.3, 0.5, 0.2], rtol=1e-6)
    assert r.max_box_area == np.float32(0.4) * np.float32(0.5)
    np.testing.assert_allclose(r.boxes_xyxy[0], [80, 40, 120, 60], atol=1e-4)
    empty = run_pass([b], (100, 200), 0.1, 0.1, 1.0)
    assert empty.max_box_area is None and empty.boxes_xyxy.shape == (0, 4) and empty.scores.shape == (0,)
    assert defect_area_limit(None, 0.9) == np.float32(0.9)
    assert defect_area_limit(np.float32(0.5), 0.3) == np.float32(np.float32(0.5) * np.float32(0.3))


def test_denormalise_boxes_reference_order():
    b = denormalise_boxes(np.array([[0.5, 0.25, 0.5, 0.5]], np.float32), 40, 80)
    np.testing.assert_array_equal(b, [[20, 0, 60, 20]])
    assert b.dtype == np.float32


# ------------------------------------------------------------------ rescoring, top-k, fusion
def _box_mask(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_isolated_mask_gives_half_its_score_and_overlaps_average():
    h, w = 20, 30
    masks = np.stack([_box_mask(h, w, 0, 10, 0, 10), _box_mask(h, w, 5, 15, 5, 15)])
    r = regularise(np.array([0.4, 0.8]), masks, np.zeros((h, w), np.float32), k_mask=5)
    assert r.map_native[0, 0] == pytest.approx(0.4 / 2)            # one mask: s / (1 + 1)
    assert r.map_native[7, 7] == pytest.approx((0.4 + 0.8) / 3)    # two masks: sum / (1 + 2)
    assert r.map_native[12, 12] == pytest.approx(0.8 / 2)
    assert r.map_native[19, 29] == 0.0
    np.testing.assert_array_equal(r.rescores, [0.4, 0.8])        # zero saliency: factor exp(0) = 1


def test_topk_keeps_the_k_best_rescored_masks():
    h, w = 10, 40
    masks = np.stack([_box_mask(h, w, 0, 10, 10 * i, 10 * i + 10) for i in range(4)])
    saliency = np.zeros((h, w), np.float32)
    saliency[:, 30:40] = 0.5  # lifts mask 3 by exp(1.5)
    r = regularise(np.array([0.5, 0.2, 0.4, 0.3]), masks, saliency, k_mask=2)
    np.testing.assert_allclose(r.rescores[3], 0.3 * np.exp(1.5), rtol=1e-6)
    assert r.topk.tolist() == [0, 3]  # ascending rescore order, like argsort()[-k:]
    assert r.map_native[:, 10:30].max() == 0.0  # masks 1 and 2 dropped
    assert r.map_native[0, 0] == pytest.approx(0.25)
    all_kept = regularise(np.array([0.5, 0.2]), masks[:2], saliency, k_mask=5)
    assert sorted(all_kept.topk.tolist()) == [0, 1]


def test_empty_inputs_give_zero_map_and_empty_mask_factor_one():
    r = regularise(np.zeros(0), np.zeros((0, 8, 9), bool), np.ones((8, 9), np.float32), k_mask=3, out_size=16)
    assert r.map_native.shape == (8, 9) and not r.map_native.any()
    assert r.anomaly_map.shape == (16, 16) and not r.anomaly_map.any()
    r = regularise(np.array([0.7]), np.zeros((1, 8, 9), bool), np.ones((8, 9), np.float32), k_mask=3)
    assert r.rescores.tolist() == [0.7] and not r.map_native.any()
    with pytest.raises(ValueError, match="2 scores for 1 masks"):
        regularise(np.array([0.1, 0.2]), np.zeros((1, 8, 9), bool), np.zeros((8, 9)), k_mask=1)


# ------------------------------------------------------------------ multi-instance saliency
def _naive_cross_object(flat, positions):
    """The reference's per-object loop: zero own positions in a copy, gather the others, max cosine."""
    out = []
    for i, own in enumerate(positions):
        cleared = flat.clone()
        cleared[:, own] = 0
        others = np.concatenate([p for j, p in enumerate(positions) if j != i])
        out.append((flat[:, own].T @ cleared[:, others]).max(dim=1).values)
    return out


def test_pairwise_cross_object_similarity_matches_the_reference_loop_with_overlaps():
    import torch

    g = torch.Generator().manual_seed(0)
    flat = torch.nn.functional.normalize(torch.randn(16, 12 * 12, generator=g), dim=0)
    grid = np.zeros((3, 12, 12), bool)
    grid[0, 0:6, 0:7] = True
    grid[1, 3:9, 5:12] = True  # overlaps object 0
    grid[2, 8:12, 0:4] = True
    positions = [np.flatnonzero(m.reshape(-1)) for m in grid]
    fast = _cross_object_best_similarity(flat, positions, chunk=7)
    slow = _naive_cross_object(flat, positions)
    for a, b in zip(fast, slow):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def tiny_backbone():
    from zsasbench.models import Runtime, load
    from zsasbench.models.timm_backbone import WIDE_RESNET50

    return load(WIDE_RESNET50, Runtime(profile="tiny-random"))


def _ellipse(h, w, x0, y0, x1, y1):
    yy, xx = np.mgrid[:h, :w]
    cx, cy, a, b = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 2, (y1 - y0) / 2
    return ((xx + 0.5 - cx) / a) ** 2 + ((yy + 0.5 - cy) / b) ** 2 <= 1


def _stage_inputs(h=48, w=64):
    img = np.random.default_rng(3).integers(0, 255, (h, w, 3), dtype=np.uint8)
    obj_boxes = np.array([[0.25, 0.5, 0.4, 0.8], [0.75, 0.5, 0.4, 0.8]], np.float32)
    obj = [CaptionDetections(obj_boxes, _scores([{3: 0.5}, {3: 0.4}]), TOKENS, "PlaceHolder")]
    dfx = [CaptionDetections(np.array([[0.3, 0.4, 0.1, 0.2], [0.7, 0.6, 0.1, 0.1]], np.float32),
                             _scores([{1: 0.4}, {1: 0.3}]), TOKENS, "tile")]
    seg = lambda boxes: np.stack([_ellipse(h, w, *b) for b in boxes])  # noqa: E731
    return img, obj, dfx, seg


def test_multi_instance_uses_cross_object_saliency_and_falls_back_with_one_object(tiny_backbone):
    img, obj, dfx, seg = _stage_inputs()
    calls = []

    def segment(boxes):
        calls.append(len(boxes))
        return seg(boxes)

    r = hybrid_regularisation(img, obj, dfx, segment, object_number=2, k_mask=5, area_ratio=0.5,
                              backbone=tiny_backbone, multi_size=64)
    assert calls == [4]  # one call: 2 object boxes, then 2 defect boxes
    assert r.saliency.mode == "multi" and r.fallbacks["multi_instance_to_single"] == 0
    assert r.saliency.saliency.shape == img.shape[:2] and r.saliency.saliency.dtype == np.float64
    assert r.saliency.saliency.max() > 0
    one = [CaptionDetections(obj[0].boxes_cxcywh[:1], obj[0].token_scores[:1], TOKENS, "PlaceHolder")]
    r = hybrid_regularisation(img, one, dfx, seg, object_number=2, k_mask=5, area_ratio=0.5,
                              backbone=tiny_backbone, multi_size=64, single_size=64)
    assert r.saliency.mode == "single" and r.fallbacks["multi_instance_to_single"] == 1
    # single instance: object boxes are never segmented; no object box kept is not an error
    calls.clear()
    none = [CaptionDetections(np.zeros((0, 4), np.float32), np.zeros((0, 6), np.float32), TOKENS, None)]
    r = hybrid_regularisation(img, none, dfx, segment, object_number=1, k_mask=5, area_ratio=0.5,
                              backbone=tiny_backbone, single_size=64)
    assert calls == [2] and r.object_pass.max_box_area is None
    assert r.defect_max_area == np.float32(0.5) and len(r.defect_pass.scores) == 2
    assert r.result.map_native.max() > 0


# ------------------------------------------------------------------ prompt tables
def _all_entries():
    for key, (manual, props) in P.TABLES.items():
        assert sorted(manual) == sorted(props), key
        for cat in manual:
            yield key, cat, props[cat]
    for key, (name, _, prop) in P.SINGLE_CLASS.items():
        yield key, name, prop


@pytest.mark.parametrize("key,cat,prop", list(_all_entries()), ids=lambda v: v if isinstance(v, str) else "")
def test_property_sentences_round_trip_through_the_reference_parser(key, cat, prop):
    assert P.parse_property_sentence(P.property_sentence(cat, prop)) == prop


def test_tables_cover_the_reference_classes():
    assert len(P.MVTEC_PROPERTY) == 15 and len(P.VISA_PROPERTY) == 12
    assert P.VISA_PROPERTY["candle"].object_number == 4 and P.VISA_PROPERTY["chewinggum"].object_word == "chewinggum"
    assert P.MVTEC_MANUAL["metal_nut"][0][1] == "nut" and P.MVTEC_PROPERTY["screw"].area_ratio == 0.1


def test_mvtec_tile_prompts_equal_the_fixture_inputs():
    from conftest import FIXTURES

    path = FIXTURES / "saa" / "inputs.json"
    p = P.category_prompts("mvtec", "tile", "texture", "tile")
    assert p.source == "mvtec/tile"
    assert [list(t) for t in p.textual] == [["defect on tile", "tile"], ["damage on tile", "tile"],
                                            ["flaw on tile", "tile"], ["defect.", "tile"]]
    if path.is_file():  # the fixture's own record of what the reference used
        inputs = json.loads(path.read_text())
        assert [list(t) for t in p.textual] == inputs["textual_prompts"]
        assert P.parse_property_sentence(inputs["cases"][0]["property_prompt"]) == p.prop


def test_dataset_names_map_to_reference_tables_and_defaults():
    assert P.category_prompts("MVTec-AD", "metal_nut", "object", "metal nut").textual[0] == ("defect on metal_nut",
                                                                                          "metal_nut")
    mtd = P.category_prompts("mtd", "mtd", "texture", "magnetic tile")
    assert mtd.source == "mtd/mtd" and mtd.prop.object_word == "mtd," and mtd.textual[0] == ("defect on mtd", "mtd")
    assert P.category_prompts("ksdd", "kolektor", "texture", "commutator").source == "ksdd2/ksdd2"
    tex = P.category_prompts("dagm", "Class1", "texture", "textured surface")
    assert tex.source == "default/texture" and tex.prop.area_ratio == 0.9 and tex.prop.k_mask == 5
    assert tex.textual[0] == ("defect on textured surface", "surface") and tex.textual[-1] == ("defect.", "surface")
    assert tex.prop.object_word == "textured_surface,"
    obj = P.category_prompts("mvtec", "unknown_thing", "object", "unknown thing")
    assert obj.source == "default/object" and obj.prop.area_ratio == 0.75
    with pytest.raises(UserError, match="kind"):
        P.category_prompts("mpdd", "x", "fabric", "x")
    with pytest.raises(UserError, match="object_number"):
        P.PropertyPrompt("x,", 0, 5, 0.9)
    with pytest.raises(UserError, match="expected the form"):
        P.parse_property_sentence("too short")


# ------------------------------------------------------------------ the adapter
class _FakeDetector:
    """Stand-in with the GroundingDino.detect interface: fixed pixel boxes per caption."""

    def __init__(self, table):
        self.table, self.calls = table, []

    def detect(self, image, prompt, box_threshold, text_threshold, nms_iou=None):
        from zsasbench.models.grounding_dino import Detections

        self.calls.append(prompt)
        boxes, scores, tokens = self.table.get(prompt, (np.zeros((0, 4)), np.zeros((0, 3)), ["[CLS]", ".", "[SEP]"]))
        scores = np.asarray(scores, np.float32)
        return Detections(np.asarray(boxes, np.float32), scores.max(axis=1) if len(scores) else np.zeros(0, np.float32),
                          [""] * len(scores), scores, list(tokens))


class _FakeSegmenter:
    def __init__(self):
        self.images = []

    def segment_boxes(self, image, boxes):
        from zsasbench.models.sam import Masks

        self.images.append(image)
        h, w = image.shape[:2]
        m = np.stack([_ellipse(h, w, *b) for b in boxes])
        return Masks(m, m.astype(np.float32), np.ones(len(boxes), np.float32))


def test_adapter_runs_the_reference_flow_with_stand_in_models(tiny_backbone):
    from zsasbench.methods.saa_plus import SAAPlus, SAAPlusConfig
    from zsasbench.testing import contract_context

    h, w = 40, 60
    img = np.zeros((h, w, 3), np.uint8)
    img[..., 0] = 200  # red: BGR order is visible
    table = {
        "metal_plate,.": ([[0, 0, 60, 40], [2, 2, 58, 38]], [[0, 0.6, 0, 0], [0, 0.5, 0, 0]],
                          ["[CLS]", "metal_plate", ",", "[SEP]"]),
        "defect on metal plate.": ([[10, 10, 20, 20], [0, 0, 57, 37]], [[0, 0.4, 0, 0, 0, 0, 0], [0, 0.5] + [0] * 5],
                                   ["[CLS]", "defect", "on", "metal", "plate", ".", "[SEP]"]),
        "defect.": ([[30, 20, 40, 30]], [[0, 0.3, 0, 0]], ["[CLS]", "defect", ".", "[SEP]"]),
    }
    det, seg = _FakeDetector(table), _FakeSegmenter()
    m = SAAPlus(SAAPlusConfig(single_instance_size=64, reference_bgr=True))
    m._models = (det, seg, tiny_backbone)
    m.prepare(contract_context(kind="texture"))
    (out,) = m.predict([img])
    assert det.calls == ["metal_plate,.", "defect on metal plate.", "damage on metal plate.", "flaw on metal plate.",
                         "defect."]
    assert out.shape == (h, w) and out.dtype == np.float32
    # object box 0 is the whole image (area 1, dropped); box 1 is kept: limit 0.9 * (56*36)/(60*40) = 0.756;
    # the 57x37 defect box (0.879) is too large, so two defect masks remain, both in the map
    assert out[15, 15] > 0 and out[25, 35] > 0 and out[2, 50] == 0
    assert seg.images[0][0, 0, 2] == 200  # reference_bgr: SAM saw BGR
    assert m.counters() == {"images": 1, "no_object_box": 0, "no_defect_box": 0, "multi_instance_fallback": 0}
    art = m.artifacts()
    assert art["source"] == "default/texture" and art["k_mask"] == 5
    assert P.parse_property_sentence(art["property_prompt"]).area_ratio == 0.9


def test_config_validation():
    from zsasbench.methods import create_method

    with pytest.raises(UserError, match="box_threshold"):
        create_method("saa-plus", {"box_threshold": "1.5"})
    with pytest.raises(UserError, match="k_mask"):
        create_method("saa-plus", {"k_mask": "-1"})
    m = create_method("saa-plus", {"k_mask": "3", "area_ratio": "0.5"})
    assert [s.family for s in m.required_models()] == ["grounding-dino", "sam", "timm"]
    with pytest.raises(UserError, match="prepare"):
        m.score_image(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.slow
def test_saa_plus_keeps_the_method_contract_with_tiny_random_models():
    from zsasbench.methods.saa_plus import SAAPlus, SAAPlusConfig
    from zsasbench.models import Runtime
    from zsasbench.testing import check_method

    method = SAAPlus(SAAPlusConfig(single_instance_size=64), runtime=Runtime(profile="tiny-random"))
    maps = check_method(method, kinds=("texture",))
    assert method.display_name == "SAA+" and len(maps) == 3
    assert method.counters()["images"] > 0
