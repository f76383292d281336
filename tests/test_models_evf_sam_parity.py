"""EVF-SAM port vs. the official implementation (hustvl/EVF-SAM @ 9935dc5) on the shared parity fixture.

The fixture's deterministic weights (1.3 G values, keyed by the official checkpoint's names) go through
`network_from_state_dict`, the function every EVF-SAM source (hub folder, checkpoint file) ends in after
reading its file, so key names, strictness and dtype handling are the official checkpoint's path.
The model is built and run once per module (about a minute on 2 cores) and freed afterwards.

Reproduce the figures: `.venv/bin/pytest tests/test_models_evf_sam_parity.py -s` (prints max abs errors).
"""
from __future__ import annotations

import gc
import json
import sys

import numpy as np
import pytest

from conftest import fixture_dir

pytestmark = pytest.mark.slow

FIXTURE = "evf_sam"


def _detweights_threaded(detweights, manifest) -> dict:
    """detweights.state_dict(manifest), with the tensors drawn on two threads (numpy fills without the GIL).

    Each tensor has its own generator (seeded by its key), so the values are those of the serial call."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    entries = manifest["tensors"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        arrays = pool.map(lambda e: detweights.tensor(e["key"], e["shape"], e["init"]), entries)
        return {e["key"]: torch.from_numpy(a) for e, a in zip(entries, arrays, strict=True)}


@pytest.fixture(scope="module")
def evf_sam_parity_run():
    folder = fixture_dir(FIXTURE)
    import torch
    from PIL import Image

    from zsasbench.models.evf_sam import EVF_SAM_ARCH, EvfSam, network_from_state_dict

    sys.path.insert(0, str(folder.parent))
    import detweights

    expected = dict(np.load(folder / "expected.npz"))
    manifest = json.loads((folder / "manifest.json").read_text())
    state_dict = _detweights_threaded(detweights, manifest)
    with torch.random.fork_rng(devices=[]):
        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        net = network_from_state_dict(EVF_SAM_ARCH, state_dict, source=str(folder / "manifest.json"))
        del state_dict
        model = EvfSam(net, tokenizer=None, arch=EVF_SAM_ARCH, source="parity fixture", device="cpu",
                       dtype="float32", weights_are_real=False)
        image = np.asarray(Image.open(folder / "input_0.png").convert("RGB"))
        result = model.segment(image, input_ids=expected["input_ids"].tolist(), keep_intermediates=True)
    got = {k: v.detach().float().cpu().numpy() for k, v in result.intermediates.items() if hasattr(v, "detach")}
    got.update(text_embeds=result.text_embeds.float().cpu().numpy(),
               low_res_logits=result.low_res_logits.float().cpu().numpy(),
               iou_predictions=result.iou_predictions.float().cpu().numpy(),
               pred_logits=result.logits, resize_shape=np.array(result.resize_shape))
    del model, net, result
    gc.collect()
    yield expected, got
    gc.collect()


def _max_err(expected, got, key):
    e, g = expected[key], got[key]
    if key in ("pixel_values_beit", "pixel_values_sam"):
        g = g[None]
    assert e.shape == g.shape, f"{key}: shape {g.shape}, expected {e.shape}"
    err = float(np.abs(e.astype(np.float64) - g.astype(np.float64)).max())
    print(f"evf_sam parity {key}: max abs error {err:.3g} (scale {float(np.abs(e).max()):.3g})")
    return err


def test_evf_sam_parity_preprocessing(evf_sam_parity_run):
    expected, got = evf_sam_parity_run
    assert tuple(got["resize_shape"]) == tuple(expected["resize_shape"])
    assert _max_err(expected, got, "pixel_values_beit") <= 1e-5
    assert _max_err(expected, got, "pixel_values_sam") <= 1e-5


@pytest.mark.parametrize("key,tol", [
    ("beit3_encoder_out", 1e-4),
    ("text_embeds", 1e-4),
    ("sam_image_embeddings", 1e-4),
    ("image_pe", 1e-5),
    ("iou_predictions", 1e-4),
])
def test_evf_sam_parity_intermediates(evf_sam_parity_run, key, tol):
    expected, got = evf_sam_parity_run
    assert _max_err(expected, got, key) <= tol


def test_evf_sam_parity_low_res_logits(evf_sam_parity_run):
    """The fixture's acceptance rule, part 1: low_res_logits within 1e-3."""
    expected, got = evf_sam_parity_run
    assert _max_err(expected, got, "low_res_logits") <= 1e-3


def test_evf_sam_parity_final_mask_sign(evf_sam_parity_run):
    """The fixture's acceptance rule, part 2: the final mask (logits > 0 at 309x513) agrees on >= 99.9 %."""
    expected, got = evf_sam_parity_run
    _max_err(expected, got, "pred_logits")
    agree = float(((got["pred_logits"] > 0) == (expected["pred_logits"] > 0)).mean())
    print(f"evf_sam parity final mask sign agreement: {agree * 100:.4f} %")
    assert agree >= 0.999
