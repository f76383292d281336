"""WinCLIP adapter: contract on a tiny random open_clip model, its building blocks, and parity with
anomalib 2.7.0's WinCLIP on the deterministic-weights fixture (../shared/fixtures/winclip)."""
from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import FIXTURES, fixture_dir
from zsasbench.errors import UserError
from zsasbench.methods import create_method
from zsasbench.methods.winclip import (WinCLIP, WinCLIPConfig, harmonic_aggregation, prompt_ensemble,
                                       window_masks)
from zsasbench.models import Runtime
from zsasbench.testing import check_method, contract_context

TINY = Runtime(profile="tiny-random")


def test_winclip_contract_tiny():
    maps = check_method("winclip", runtime=TINY)
    # scores are probabilities; a harmonic mean of probabilities stays inside (0, 1)
    assert all(0 < m.min() and m.max() < 1 for m in maps)


def test_winclip_image_scores_kept_and_prompts_use_object_name():
    method = create_method("winclip", runtime=TINY)
    method.prepare(contract_context(object_name="metal plate"))
    images = [np.full((40, 50, 3), v, np.uint8) for v in (30, 200)]
    maps = method.predict(images)
    assert method.class_name == "metal plate"
    assert method.last_image_scores.shape == (2,) and method.last_image_scores.dtype == np.float32
    assert set(method.counters()) == {"image_score_mean", "image_score_max"}
    # the map is a harmonic mean that includes the image score, so it cannot exceed 3x it
    for m, s in zip(maps, method.last_image_scores):
        assert m.max() < 3 * s
    override = WinCLIP(WinCLIPConfig(class_name="tile"), runtime=TINY)
    override.prepare(contract_context(object_name="metal plate"))
    assert override.class_name == "tile"


def test_winclip_prompt_ensemble_counts():
    normal, anomalous = prompt_ensemble("screw")
    assert (len(normal), len(anomalous)) == (147, 84)
    assert (len(set(normal)), len(set(anomalous))) == (140, 80)  # the duplicated template is kept
    assert normal[0] == "a cropped photo of the screw." and anomalous[-1].endswith("screw with damage for anomaly detection.")


def test_winclip_full_template_set():
    normal, anomalous = prompt_ensemble("screw", "full")
    assert (len(normal), len(anomalous)) == (7 * 22, 4 * 22)
    assert len(set(normal)) == len(normal) and len(set(anomalous)) == len(anomalous)
    assert "a cropped photo of a screw." in normal and "a jpeg corrupted photo of a screw." in normal
    with pytest.raises(UserError, match="templates"):
        WinCLIP(WinCLIPConfig(templates="paper"), runtime=TINY)


def test_window_masks_layout():
    m = window_masks(4, 2)
    assert m.shape == (4, 9)
    assert m[:, 0].tolist() == [0, 1, 4, 5]  # first window: top-left 2x2 block
    assert m[:, 1].tolist() == [1, 2, 5, 6]  # then one column to the right
    assert m[:, 3].tolist() == [4, 5, 8, 9]  # next row
    assert window_masks(3, 3).shape == (9, 1)
    with pytest.raises(UserError):
        window_masks(3, 4)


def test_harmonic_aggregation_by_hand():
    masks = window_masks(3, 2)  # 4 windows on a 3x3 grid
    scores = torch.tensor([[0.2, 0.4, 0.5, 0.8]])
    agg = harmonic_aggregation(scores, masks, 3)[0]
    assert agg[0, 0] == pytest.approx(0.2)  # corner: only window 0
    assert agg[0, 1] == pytest.approx(2 / (1 / 0.2 + 1 / 0.4))  # top middle: windows 0 and 1
    assert agg[1, 1] == pytest.approx(4 / sum(1 / s for s in (0.2, 0.4, 0.5, 0.8)))  # centre: all four
    assert agg[2, 2] == pytest.approx(0.8)


def test_winclip_bad_config():
    with pytest.raises(UserError):
        WinCLIP(WinCLIPConfig(scales=()), runtime=TINY)
    method = WinCLIP(WinCLIPConfig(scales=(2, 99)), runtime=TINY)
    with pytest.raises(UserError, match="99"):
        method.prepare(contract_context())


# --- parity with anomalib 2.7.0 (../shared/fixtures/winclip) ------------------------------------------
@pytest.fixture(scope="module")
def winclip_parity(tmp_path_factory):
    """Runs the adapter once on the fixture inputs with the fixture's deterministic CLIP weights, loaded
    through the open-clip family's local-checkpoint path (strict load)."""
    folder = fixture_dir("winclip")
    weights = fixture_dir("clip_vit_b16_plus_240")
    sys.path.insert(0, str(FIXTURES))
    try:
        import detweights
    finally:
        sys.path.remove(str(FIXTURES))
    ckpt = tmp_path_factory.mktemp("winclip") / "vit_b16_plus_240_det.pt"
    torch.save(detweights.state_dict(str(weights / "manifest.json")), ckpt)
    method = WinCLIP(WinCLIPConfig(weights=str(ckpt), backbone="ViT-B-16-plus-240"), runtime=Runtime())
    method.keep_outputs = True
    method.set_class_name("tile")
    images = [np.asarray(Image.open(folder / f"input_{i}.png").convert("RGB")) for i in range(2)]
    maps = method.predict(images)
    out = {k: (v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else v)
           for k, v in method.last_outputs.items()}
    return np.load(folder / "expected.npz"), out, maps, images, method


def _err(a, b) -> float:
    return float(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)).max())


@pytest.mark.slow
def test_winclip_parity_maps(winclip_parity):
    expected, out, maps, images, _ = winclip_parity
    assert out["anomaly_maps"].shape == expected["anomaly_maps"].shape
    assert _err(out["anomaly_maps"], expected["anomaly_maps"]) <= 1e-5
    # predict's maps = the reference 240x240 map resized bilinearly to each image's own size
    for i, (m, img) in enumerate(zip(maps, images)):
        ref = F.interpolate(torch.from_numpy(expected["anomaly_maps"][i])[None, None], size=img.shape[:2],
                            mode="bilinear", align_corners=False)[0, 0].numpy()
        assert m.shape == img.shape[:2] and m.dtype == np.float32
        assert _err(m, ref) <= 1e-5


@pytest.mark.slow
def test_winclip_parity_image_scores(winclip_parity):
    expected, out, _, _, method = winclip_parity
    assert _err(out["image_scores"], expected["image_scores"]) <= 1e-5
    assert _err(method.last_image_scores, expected["image_scores"]) <= 1e-5
    # the two reference scores differ by ~1.2e-4: the port must keep their order
    assert np.argsort(method.last_image_scores).tolist() == np.argsort(expected["image_scores"]).tolist()


@pytest.mark.slow
def test_winclip_parity_batch_and_embeddings(winclip_parity):
    expected, out, _, _, _ = winclip_parity
    assert _err(out["batch"], expected["batch"]) <= 1e-5
    assert _err(out["text_embeddings"], expected["text_embeddings"]) <= 1e-4
    assert _err(out["image_embeddings"], expected["image_embeddings"]) <= 1e-4


@pytest.mark.slow
def test_winclip_parity_intermediates(winclip_parity):
    expected, out, _, _, method = winclip_parity
    normal, anomalous = prompt_ensemble("tile")
    assert normal == expected["normal_prompts"].tolist() and anomalous == expected["anomalous_prompts"].tolist()
    tokens = method.clip.tokenize(normal).cpu().numpy()
    assert np.array_equal(tokens, expected["normal_prompt_tokens"])
    for k in (2, 3):
        assert np.array_equal(out[f"window_masks_scale{k}"], expected[f"window_masks_scale{k}"])
        assert _err(out[f"window_embeddings_scale{k}"], expected[f"window_embeddings_scale{k}"]) <= 1e-4
        assert _err(out[f"window_scores_scale{k}"], expected[f"window_scores_scale{k}"]) <= 1e-5
        assert _err(out[f"scale_map_scale{k}"], expected[f"scale_map_scale{k}"]) <= 1e-5
    assert _err(out["feature_map"], expected["feature_map"]) <= 1e-5
    assert _err(out["image_probs"], expected["image_probs"]) <= 1e-5
    assert _err(out["multi_scale_map"], expected["multi_scale_map"]) <= 1e-5
