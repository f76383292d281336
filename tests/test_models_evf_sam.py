"""EVF-SAM model family: tiny real-architecture models, checkpoint round trips, strict loading, BEiT-3."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from zsasbench.errors import DataError, MissingWeightsError, UserError
from zsasbench.models import ModelSpec, Runtime, availability, load
from zsasbench.models.beit3 import BEiT3, Beit3Config, init_beit3_
from zsasbench.models.evf_sam import (EVF_SAM, EVF_SAM_ARCH, TINY_ARCH, EvfArch, EvfSam, build_tiny, beit3_pixels,
                                      network_from_state_dict, sam_pixels, save_checkpoint)
from zsasbench.models.evf_sam_tokenizer import SPM_NAME, EvfTokenizer, tiny_spm_proto


def _image(h=37, w=53, seed=0):
    return (np.random.default_rng(seed).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny():
    return build_tiny(seed=0)


def test_tiny_random_profile_gives_the_wrapper(tiny):
    model = load(EVF_SAM, Runtime(profile="tiny-random"))
    assert isinstance(model, EvfSam) and not model.weights_are_real
    out = model.segment(_image(), ["abnormal", "defect"])
    assert out.logits.shape == (2, 37, 53) and out.logits.dtype == np.float32
    assert np.isfinite(out.logits).all()
    assert not np.allclose(out.logits[0], out.logits[1]), "different prompts must give different masks"
    again = build_tiny(seed=0).segment(_image(), ["abnormal", "defect"])
    np.testing.assert_array_equal(out.logits, again.logits)


def test_prompts_batch_like_single_forwards(tiny):
    """Prompts of different lengths share one padded BEiT-3 batch; each must equal its own forward."""
    img = _image()
    prompts = ["defect", "metal scratch", "abnormal"]
    batched = tiny.segment(img, prompts)
    for i, p in enumerate(prompts):
        single = tiny.segment(img, [p])
        np.testing.assert_allclose(batched.logits[i], single.logits[0], atol=1e-5)
        torch.testing.assert_close(batched.text_embeds[i], single.text_embeds[0], atol=1e-5, rtol=0)


def test_segment_from_token_ids_equals_prompts(tiny):
    img = _image()
    ids = tiny.tokenize(["defect"])
    assert ids == [[0, tiny.tokenizer.piece_to_id("\u2581defect"), 2]]
    np.testing.assert_array_equal(tiny.segment(img, input_ids=ids).logits, tiny.segment(img, ["defect"]).logits)
    with pytest.raises(UserError):
        tiny.segment(img)
    with pytest.raises(UserError):
        tiny.segment(img, [""])
    with pytest.raises(UserError, match="uint8"):
        tiny.segment(img.astype(np.float32), ["defect"])


@pytest.mark.parametrize("safetensors", [False, True])
def test_checkpoint_folder_round_trip(tiny, tmp_path, safetensors):
    folder = save_checkpoint(tiny, tmp_path / "evf", safetensors=safetensors)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["model_type"] == "evf" and cfg["sam_scale"] == "custom"
    spec = ModelSpec("evf-sam", str(folder))
    av = availability(spec)
    assert av.present and av.size_bytes > 0
    loaded = load(spec, Runtime())
    assert isinstance(loaded, EvfSam) and loaded.weights_are_real and loaded.arch == TINY_ARCH
    img = _image(61, 40, seed=3)
    np.testing.assert_array_equal(loaded.segment(img, ["abnormal", "defect"]).logits,
                                  tiny.segment(img, ["abnormal", "defect"]).logits)


def test_checkpoint_file_path_uses_config_and_tokenizer_beside_it(tiny, tmp_path):
    folder = save_checkpoint(tiny, tmp_path / "evf")
    weights = folder / "pytorch_model.bin"
    loaded = load(ModelSpec("evf-sam", str(weights)), Runtime())
    img = _image()
    np.testing.assert_array_equal(loaded.segment(img, ["defect"]).logits, tiny.segment(img, ["defect"]).logits)


def test_strict_loading_names_the_problem(tiny, tmp_path):
    sd = {k: v.clone() for k, v in tiny.net.state_dict().items()}
    missing = dict(sd)
    missing.pop("mm_extractor.beit3.vision_embed.mask_token")
    with pytest.raises(DataError, match="mask_token"):
        network_from_state_dict(TINY_ARCH, missing, source="ckpt.bin")
    extra = dict(sd, **{"visual_model.extra.weight": torch.zeros(1)})
    with pytest.raises(DataError, match="visual_model.extra.weight"):
        network_from_state_dict(TINY_ARCH, extra, source="ckpt.bin")
    bad = dict(sd)
    bad["text_hidden_fcs.0.2.bias"] = torch.zeros(7)
    with pytest.raises(DataError, match="text_hidden_fcs.0.2.bias"):
        network_from_state_dict(TINY_ARCH, bad, source="ckpt.bin")
    # float16 checkpoints (the official one is) load into the runtime dtype
    half = {k: (v.half() if v.is_floating_point() else v) for k, v in sd.items()}
    net = network_from_state_dict(TINY_ARCH, half, source="ckpt.bin", dtype="float32")
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert net.visual_model.pixel_mean.flatten().tolist() == pytest.approx([123.675, 116.28, 103.53])


def test_official_architecture_matches_published_size():
    """config.json of YxZhang/evf-sam (hidden 1024, large, huge, out 256) builds the 1.32 B model."""
    arch = EvfArch.from_config({"hidden_size": 1024, "mm_extractor_scale": "large", "sam_scale": "huge",
                                "out_dim": 256, "model_type": "evf"})
    assert arch == EVF_SAM_ARCH
    from zsasbench.models.evf_sam import build_network

    with torch.device("meta"):
        net = build_network(arch)
    assert sum(t.numel() for t in net.state_dict().values()) == 1_315_105_328
    with pytest.raises(DataError, match="hidden_size"):
        EvfArch.from_config({"hidden_size": 768, "mm_extractor_scale": "large"})
    with pytest.raises(DataError, match="sam_scale"):
        EvfArch.from_config({"sam_scale": "base"})


def test_missing_weights_are_reported_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    av = availability(EVF_SAM)
    assert not av.present
    assert av.how_to_get == f"hf download YxZhang/evf-sam --revision {EVF_SAM.revision}"
    with pytest.raises(MissingWeightsError, match="hf download YxZhang/evf-sam"):
        load(ModelSpec("evf-sam", EVF_SAM.source, revision=EVF_SAM.revision, role="x"), Runtime())
    with pytest.raises(MissingWeightsError):
        load(ModelSpec("evf-sam", str(tmp_path / "nothing-here")), Runtime())
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not availability(ModelSpec("evf-sam", str(empty))).present


def test_tokenizer_xlmr_ids_over_sentencepiece(tmp_path):
    tok = EvfTokenizer(tiny_spm_proto())
    d = tok.piece_to_id("\u2581defect")
    assert tok.encode("defect") == [0, d, 2]
    assert d == 5  # spm id 4 (<unk>, <s>, </s>, ▁abnormal, ▁defect) + fairseq offset 1
    assert tok.encode("abnormal defect") == [0, tok.piece_to_id("\u2581abnormal"), d, 2]
    assert tok.piece_to_id("<pad>") == 1 and tok.piece_to_id("<unk>") == 3
    assert tok.piece_to_id("never-a-piece") == 3
    assert tok.mask_id == len(tok) - 1
    tok.save(tmp_path)
    again = EvfTokenizer.from_file(tmp_path / SPM_NAME)
    assert again.encode("crack on metal") == tok.encode("crack on metal")
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["tokenizer_class"] == "XLMRobertaTokenizer"
    (tmp_path / "bad.model").write_bytes(b"not a model")
    with pytest.raises(DataError, match="bad.model"):
        EvfTokenizer.from_file(tmp_path / "bad.model")


def test_preprocessing_shapes_and_padding():
    img = _image(30, 80)
    x, (h, w) = sam_pixels(img, 64)
    assert (h, w) == (24, 64) and x.shape == (3, 64, 64)
    assert torch.count_nonzero(x[:, h:, :]) == 0  # padding after normalisation is exactly 0
    grey = np.full((10, 10, 3), 255, np.uint8)
    b = beit3_pixels(grey, 16)
    assert b.shape == (3, 16, 16) and torch.allclose(b, torch.ones_like(b))


def _torchscale_pair(cfg: Beit3Config, seed=0):
    ts = pytest.importorskip("torchscale.model.BEiT3", reason="torchscale not installed (optional cross-check)")
    from torchscale.architecture.config import EncoderConfig

    ecfg = EncoderConfig(img_size=cfg.img_size, patch_size=cfg.patch_size, vocab_size=cfg.vocab_size, multiway=True,
                         layernorm_embedding=False, normalize_output=True, no_output_layer=True, drop_path_rate=0,
                         encoder_embed_dim=cfg.embed_dim, encoder_attention_heads=cfg.heads,
                         encoder_ffn_embed_dim=cfg.ffn_dim, encoder_layers=cfg.layers,
                         max_source_positions=cfg.max_source_positions)
    ours = init_beit3_(BEiT3(cfg), seed=seed).eval()
    theirs = ts.BEiT3(ecfg).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same key names, both ways
    ours.load_state_dict(theirs.state_dict(), strict=True)
    return ours, theirs


def test_beit3_matches_torchscale_when_installed():
    cfg = Beit3Config(embed_dim=32, layers=2, heads=4, ffn_dim=64, img_size=32, patch_size=8, vocab_size=64,
                      max_source_positions=34)
    ours, theirs = _torchscale_pair(cfg)
    g = torch.Generator().manual_seed(1)
    pixels = torch.randn(2, 3, 32, 32, generator=g)
    ids = torch.randint(0, 64, (2, 5), generator=g)
    with torch.no_grad():
        a = ours(pixels, ids)
        b = theirs(visual_tokens=pixels, textual_tokens=ids, text_padding_position=torch.zeros_like(ids))["encoder_out"]
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        pad = torch.tensor([[False] * 5, [False, False, False, True, True]])
        a = ours(pixels, ids, pad)
        b = theirs(visual_tokens=pixels, textual_tokens=ids, text_padding_position=pad)["encoder_out"]
        torch.testing.assert_close(a[:, :20], b[:, :20], atol=1e-5, rtol=1e-5)  # 17 vision + 3 real text
        assert not torch.allclose(a[1, :17], ours(pixels, ids)[1, :17]), "padding must change the result"


def test_beit3_rejects_bad_input():
    cfg = Beit3Config(embed_dim=32, layers=1, heads=4, ffn_dim=64, img_size=32, patch_size=8, vocab_size=64,
                      max_source_positions=8)
    model = init_beit3_(BEiT3(cfg)).eval()
    with pytest.raises(UserError, match="positions"):
        model(torch.zeros(1, 3, 32, 32), torch.zeros(1, 7, dtype=torch.long))
    with pytest.raises(UserError, match="token ids"):
        model(torch.zeros(1, 3, 32, 32), torch.full((1, 3), 64))
    with pytest.raises(UserError, match="32x32"):
        model(torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(UserError, match="divisible"):
        Beit3Config(embed_dim=30, heads=4)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_reduced_precision_runtime(tiny, dtype):
    """Half-precision runtimes run (SAM's neck stays float32) and track the float32 result."""
    model = build_tiny(seed=0, runtime=Runtime(profile="tiny-random", dtype=dtype))
    assert next(model.net.mm_extractor.parameters()).dtype == getattr(torch, dtype)
    assert model.net.visual_model.image_encoder.neck[0].weight.dtype == torch.float32
    img = _image()
    low = model.segment(img, ["abnormal", "defect"]).logits
    ref = tiny.segment(img, ["abnormal", "defect"]).logits
    assert low.dtype == np.float32 and np.isfinite(low).all()
    assert np.corrcoef(low.ravel(), ref.ravel())[0, 1] > 0.95
