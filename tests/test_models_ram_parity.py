"""RAM and RAM++ ports vs. the official implementation (xinyu1205/recognize-anything @ 7cb804a8) on the shared
parity fixtures ../shared/fixtures/ram and ../shared/fixtures/ram_plus.

The deterministic weights (keyed by the official checkpoints' names; RAM's tied aliases filled in, as an
official checkpoint stores them) go as a checkpoint object `{'model': state_dict}` through `load_ram_tagger`,
the same key handling / build / assign path a checkpoint file takes after `torch.load`. The input PNGs go
through the tagger's own preprocessing, so the preprocessing is under test too. Each model is built and run
once (module-scoped fixture) and freed before the next.

Reproduce the figures: `.venv/bin/pytest tests/test_models_ram_parity.py -s` (prints max abs errors).
"""
from __future__ import annotations

import gc
import json
import sys

import numpy as np
import pytest

from conftest import fixture_dir

pytestmark = pytest.mark.slow

PROBS_TOL = 1e-4  # README acceptance rule
INPUT_TOL = 1e-5
SECONDARY_TOL = 1e-4
COMMON = ["patch_embed_head", "stage0_head", "stage1_head", "stage2_head", "stage3_head", "visual_tokens",
          "image_embeds", "label_queries_head", "tagging_embed_head", "logits"]
RAM_PLUS_ONLY = ["desc_weights_head", "label_embed_reweight_head"]


def _run_fixture(name: str):
    """Build the port from the fixture's weights, run the tagging pass on input_0/1.png, collect arrays."""
    folder = fixture_dir(name)
    import torch
    from PIL import Image

    from zsasbench.models.ram import load_ram_tagger

    sys.path.insert(0, str(folder.parent))
    import detweights

    expected = dict(np.load(folder / "expected.npz"))
    manifest = json.loads((folder / "manifest.json").read_text())
    state = detweights.state_dict(manifest)
    for alias, canonical in manifest.get("aliases", {}).items():
        state[alias] = state[canonical]
    num_classes = expected["probs"].shape[1]
    tagger = load_ram_tagger({"model": state}, name, tag_list=[f"tag{i}" for i in range(num_classes)],
                             thresholds=float(expected["threshold"]))
    del state
    images = [np.asarray(Image.open(folder / f"input_{i}.png").convert("RGB")) for i in range(2)]
    caps = {}
    encoder = tagger.net.visual_encoder
    hooks = [encoder.patch_embed.register_forward_hook(lambda m, i, o: caps.__setitem__("patch_embed_head", o))]
    for s, stage in enumerate(encoder.layers):
        hooks.append(stage.register_forward_hook(lambda m, i, o, s=s: caps.__setitem__(f"stage{s}_head", o)))
    with torch.random.fork_rng(devices=[]):
        pixels = tagger.preprocess(images)
        out = tagger.forward(pixels)
    for hook in hooks:
        hook.remove()
    probs = torch.sigmoid(out.logits.float())
    queries = out.label_queries[0] if name == "ram" else out.label_queries  # RAM: image-independent
    got = {key: value[:, :64] for key, value in caps.items()}
    got.update(input=pixels, visual_tokens=out.visual_tokens, image_embeds=out.image_embeds, logits=out.logits,
               probs=probs, tagging_embed_head=out.tagging_embed[:, :256], label_queries_head=queries[..., :256, :])
    if out.desc_weights is not None:
        got.update(desc_weights_head=out.desc_weights[:, :256],
                   label_embed_reweight_head=out.label_embed_reweight[:, :256])
    got = {k: v.detach().float().cpu().numpy() for k, v in got.items()}
    got["tags"] = tagger.select(got["probs"])
    got["tag_names"] = tagger.names(got["probs"])
    del tagger, out, caps
    gc.collect()
    return expected, got


@pytest.fixture(scope="module")
def ram_run():
    result = _run_fixture("ram")
    yield result
    gc.collect()


@pytest.fixture(scope="module")
def ram_plus_run():
    result = _run_fixture("ram_plus")
    yield result
    gc.collect()


def _err(expected, got, key) -> float:
    assert got[key].shape == expected[key].shape, key
    err = float(np.abs(got[key].astype(np.float64) - expected[key].astype(np.float64)).max())
    print(f"max|{key}| = {err:.3e}")
    return err


def _check_probs_and_tags(run):
    expected, got = run
    assert _err(expected, got, "input") <= INPUT_TOL
    assert _err(expected, got, "probs") <= PROBS_TOL
    for b in range(2):
        np.testing.assert_array_equal(got["tags"][b], expected[f"tags_{b}"])
        assert got["tag_names"][b] == [f"tag{i}" for i in expected[f"tags_{b}"]]


def test_ram_parity_probs_and_tags(ram_run):
    _check_probs_and_tags(ram_run)


@pytest.mark.parametrize("key", COMMON)
def test_ram_parity_intermediates(ram_run, key):
    assert _err(*ram_run, key) <= SECONDARY_TOL


def test_ram_plus_parity_probs_and_tags(ram_plus_run):
    _check_probs_and_tags(ram_plus_run)


@pytest.mark.parametrize("key", COMMON + RAM_PLUS_ONLY)
def test_ram_plus_parity_intermediates(ram_plus_run, key):
    assert _err(*ram_plus_run, key) <= SECONDARY_TOL
