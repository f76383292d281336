"""SDP adapter: contract on the tiny-random profile, and the properties the port relies on."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from zsasbench.errors import UserError
from zsasbench.methods import create_method
from zsasbench.methods.sdp import SDP, SDPConfig, combine_image_scores
from zsasbench.methods.sdp_text import encode_prompts, representative_vector, state_prompts, NORMAL_STATES
from zsasbench.methods.sdp_vision import dual_path, preprocess, resolve_layers
from zsasbench.models import Runtime, load
from zsasbench.testing import check_method, contract_context, contract_images

TINY = Runtime(profile="tiny-random")


@pytest.fixture(scope="module")
def tiny():
    from zsasbench.models.open_clip import CLIP_B16_PLUS_240

    return load(CLIP_B16_PLUS_240, TINY)


def _pixels(tiny, n=2):
    return preprocess(contract_images(3)[:n], tiny.image_size[0], tiny.mean, tiny.std)


def test_sdp_contract_tiny_random():
    maps = check_method("sdp", runtime=TINY)
    assert len(maps) == 3


def test_sdp_image_scores_and_artifacts(tiny):
    method = SDP(runtime=TINY)
    method.prepare(contract_context(object_name="metal nut"))
    images = contract_images(5)
    maps = method.predict(images)
    assert method.last_image_scores.shape == (3,) and method.last_image_scores.dtype == np.float32
    assert ((method.last_image_scores >= 0) & (method.last_image_scores <= 1)).all()
    # pr_sp1 is the max of the 240x240 map; the returned maps are that map resized, so never above it.
    for m, top in zip(maps, method.last_image_scores_map_max):
        assert m.max() <= top + 1e-6
    art = method.artifacts()
    assert art["normal_prompts"][0] == "a cropped photo of the flawless metal nut."
    assert len(art["normal_prompts"]) == 198 and len(art["anomalous_prompts"]) == 220
    assert art["stage_layers"] == [3, 6, 9, 12]
    assert set(method.counters()) == {"dbscan_fallbacks"}
    assert method.last_result.surgery_features is None  # not kept by default (memory)


def test_sdp_original_path_is_clip_image_embedding(tiny):
    """The dual path's original branch must be the model's own forward: the last stage's class token is
    open_clip's normalised image embedding (batch-first open_clip 3 against our own block loop)."""
    pixels = _pixels(tiny)
    with torch.no_grad():
        ours = dual_path(tiny.model.visual, pixels, [3, 6, 9, 12]).surgery[-1][:, 0]
        theirs = tiny.model.encode_image(pixels, normalize=True)
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_sdp_truncated_text_encoding_is_exact(tiny):
    prompts = state_prompts(NORMAL_STATES, "tile")[:40]
    ours = encode_prompts(tiny.model, tiny.tokenizer, prompts, "cpu")
    with torch.no_grad():
        full = tiny.model.encode_text(tiny.tokenizer(prompts), normalize=True).numpy()
    assert np.abs(ours - full).max() < 1e-5


def test_sdp_stages_restart_after_each_layer(tiny):
    """A stage accumulates v-v attention only since the previous stage end: the last stage of 3/6/9/12
    equals the last stage of 9/12, and differs from 6/12 (which accumulates blocks 7-12)."""
    pixels = _pixels(tiny)
    visual = tiny.model.visual
    with torch.no_grad():
        a = dual_path(visual, pixels, [3, 6, 9, 12]).surgery[-1]
        b = dual_path(visual, pixels, [9, 12]).surgery[-1]
        c = dual_path(visual, pixels, [6, 12]).surgery[-1]
    assert torch.allclose(a, b, atol=1e-6)
    assert (a[:, 1:] - c[:, 1:]).abs().max() > 1e-3


def test_sdp_class_token_switch(tiny):
    pixels = _pixels(tiny)
    visual = tiny.model.visual
    with torch.no_grad():
        on = dual_path(visual, pixels, [3, 6, 9, 12], class_token_after_next_attention=True).surgery
        off = dual_path(visual, pixels, [3, 6, 9, 12], class_token_after_next_attention=False).surgery
    assert torch.equal(on[-1], off[-1])  # after the last block there is no next block
    for s in range(3):
        assert torch.equal(on[s][:, 1:], off[s][:, 1:])  # patch tokens never change
        assert (on[s][:, 0] - off[s][:, 0]).abs().max() > 1e-4
    # "off" is the original path's class token at that block: stage 3 of "off" equals a forward that
    # stops after block 3 (its class token comes from the same open_clip blocks).
    with torch.no_grad():
        only3 = dual_path(visual, pixels, [3], class_token_after_next_attention=False).surgery[0]
    assert torch.equal(only3, off[0])


def test_sdp_layers_clipped_to_depth():
    import open_clip
    from zsasbench.models.open_clip import tiny_model_config

    assert resolve_layers([3, 6, 9, 12], 12) == [3, 6, 9, 12]
    assert resolve_layers([12, 3, 3], 4) == [3]
    assert resolve_layers([3, 6, 9, 12], 2) == [2]
    with pytest.raises(UserError):
        resolve_layers([0, 3], 12)
    cfg = tiny_model_config()
    cfg["vision_cfg"].update(layers=2)
    torch.manual_seed(0)
    model = open_clip.model.CLIP(**cfg).eval()
    method = SDP(runtime=TINY)
    method.attach_model(model, open_clip.get_tokenizer("ViT-B-16-plus-240"))
    method.prepare(contract_context())
    maps = method.predict(contract_images(1)[:1])
    assert method.last_result.stage_layers == [2]
    assert np.isfinite(maps[0]).all()


def test_sdp_batch_size_does_not_change_maps(tiny):
    images = contract_images(7)
    out = []
    for bs in (1, 3):
        method = SDP(SDPConfig(batch_size=bs), runtime=TINY)
        method.prepare(contract_context())
        out.append((method.predict(images), method.last_image_scores))
    for a, b in zip(out[0][0], out[1][0]):
        assert np.abs(a - b).max() < 1e-6
    assert np.abs(out[0][1] - out[1][1]).max() < 1e-6


def test_sdp_representative_vector_dbscan():
    rng = np.random.default_rng(0)
    dirs = np.eye(8, dtype=np.float32)
    small = dirs[0] + 0.01 * rng.standard_normal((20, 8))
    big = dirs[1] + 0.01 * rng.standard_normal((30, 8))
    noise = 0.5 * np.eye(8, dtype=np.float32)[2:] * np.arange(2, 8)[:, None]  # isolated points
    data = np.concatenate([small, big * 3.0, noise]).astype(np.float32)  # norms vary: normalised first
    rep = representative_vector(data, "dbscan", eps=0.5, min_samples=15)
    assert rep.cluster_size == 30 and not rep.fell_back
    assert (rep.labels[20:50] == rep.labels[20]).all() and (rep.labels[50:] == -1).all()
    expected = big / np.linalg.norm(big, axis=1, keepdims=True)
    expected = expected.mean(0) / np.linalg.norm(expected.mean(0))
    assert np.abs(rep.vector - expected).max() < 1e-6
    # Equal cluster sizes: the lowest label wins (numpy argmax), i.e. the cluster met first.
    tie = np.concatenate([small, big[:20]]).astype(np.float32)
    assert representative_vector(tie, "dbscan", 0.5, 15).vector.argmax() == 0
    # No cluster at all: mean of everything, reported (the reference crashes here).
    sparse = representative_vector(np.eye(8, dtype=np.float32), "dbscan", 0.5, 15)
    assert sparse.fell_back and sparse.cluster_size == 8
    mean = representative_vector(data, "mean")
    assert mean.cluster_size == len(data) and abs(np.linalg.norm(mean.vector) - 1) < 1e-6
    with pytest.raises(ValueError):
        representative_vector(data, "kmeans")


def test_sdp_config_and_input_errors(tiny):
    for overrides in ({"rep_vec": "kmeans"}, {"layers": "0,3"}, {"smoothing_sigma": "-1"},
                      {"dbscan_min_samples": "0"}, {"layers": "[]"}):
        with pytest.raises(UserError):
            create_method("sdp", overrides, runtime=TINY)
    assert create_method("sdp", {"layers": "6,12"}, runtime=TINY).config.layers == [6, 12]
    method = SDP(runtime=TINY)
    with pytest.raises(UserError, match="prepare"):
        method.predict(contract_images(0))
    method.prepare(contract_context())
    assert method.predict([]) == [] and method.last_image_scores.shape == (0,)
    with pytest.raises(UserError, match="image 1"):
        method.predict([contract_images(0)[0], np.zeros((30, 40), np.uint8)])
    # Real-weights profile: a config size the model cannot take is an error, not a silent resize.
    wrong = SDP(SDPConfig(image_size=224))
    wrong.attach_model(tiny.model, tiny.tokenizer)
    wrong.prepare(contract_context())
    with pytest.raises(UserError, match="image_size=224"):
        wrong.predict(contract_images(0))


def test_sdp_required_models_and_combined_scores():
    from zsasbench.models.open_clip import CLIP_B16_PLUS_240

    assert SDP().required_models() == [CLIP_B16_PLUS_240]
    other = SDP(SDPConfig(pretrained="/ckpt/b16plus.pt")).required_models()[0]
    assert other.source == "/ckpt/b16plus.pt" and other.variant == "ViT-B-16-plus-240"
    combined = combine_image_scores(np.array([0.2, 0.4, 0.3]), np.array([-1.0, -2.0, -3.0]))
    assert np.allclose(combined, [1.0, 1.5, 0.5])
