"""open-clip, clipseg and clip-tagger families: tiny random models of the real architectures, loading
round trips through the real loading code (offline), and the missing-weights messages."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from zsasbench.errors import MissingWeightsError, UserError
from zsasbench.models import ModelSpec, Runtime, availability, load
from zsasbench.models import clip_tagger, clipseg as cs, open_clip as oc

TINY = Runtime(profile="tiny-random")
RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, (50, 70, 3), dtype=np.uint8), RNG.integers(0, 256, (64, 40, 3), dtype=np.uint8)]


def _empty_caches(tmp_path, monkeypatch):
    """Offline, with an empty Hugging Face cache and an empty ~/.cache/clip, whatever this machine holds."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    monkeypatch.setenv("HOME", str(tmp_path))


# --- open-clip -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_clip():
    return load(oc.CLIP_B16_PLUS_240, TINY)


def test_open_clip_tiny_has_the_real_layout(tiny_clip):
    assert tiny_clip.image_size == (240, 240) and tiny_clip.patch_size == (16, 16)
    assert tiny_clip.grid_size == (15, 15) and len(tiny_clip.blocks) == 12
    assert not tiny_clip.weights_are_real
    assert load(oc.CLIP_B16_PLUS_240, TINY) is tiny_clip  # loaded once per process


def test_open_clip_helpers_match_open_clip(tiny_clip):
    pixels = tiny_clip.preprocess(IMAGES)
    assert pixels.shape == (2, 3, 240, 240)
    with torch.no_grad():
        ref = tiny_clip.model.encode_image(pixels)
    assert torch.allclose(tiny_clip.encode_image(pixels), ref, atol=1e-5)
    # the last kept layer after ln_post + proj on the class token is the image embedding
    last = tiny_clip.intermediate_tokens(pixels, [3, 12])
    assert [t.shape for t in last] == [(2, 226, 64), (2, 226, 64)]
    assert torch.allclose(tiny_clip.pool(last[1]), ref, atol=1e-5)
    with pytest.raises(UserError):
        tiny_clip.intermediate_tokens(pixels, [13])


def test_open_clip_trimmed_text_is_exact(tiny_clip):
    prompts = ["a photo of a tile.", "a close-up photo of the damaged metal nut for anomaly detection.", "x"]
    with torch.no_grad():
        ref = tiny_clip.model.encode_text(tiny_clip.tokenize(prompts))
    assert torch.allclose(tiny_clip.encode_text(prompts), ref, atol=1e-5)
    norm = tiny_clip.encode_text(prompts, normalize=True)
    assert torch.allclose(norm.norm(dim=-1), torch.ones(3), atol=1e-5)


def test_open_clip_blocks_run_sequence_first_too(tiny_clip, monkeypatch):
    """open_clip < 2.26 runs its blocks sequence-first: run_blocks must transpose around them."""
    pixels = tiny_clip.preprocess(IMAGES[:1])
    with torch.no_grad():
        x = tiny_clip.visual.ln_pre(tiny_clip.embed_patches(pixels))
        ref, _ = tiny_clip.run_blocks(x)
        for blk in tiny_clip.blocks:
            blk.attn.batch_first = False
        monkeypatch.setattr(tiny_clip.visual.transformer, "batch_first", False)
        try:
            out, kept = tiny_clip.run_blocks(x, keep=[12])
        finally:
            for blk in tiny_clip.blocks:
                blk.attn.batch_first = True
    assert torch.allclose(out, ref, atol=1e-5) and torch.allclose(kept[12], ref, atol=1e-5)


def test_open_clip_round_trip_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model, cfg = oc.build_tiny(seed=3)
    folder = oc.save_open_clip_dir(model, cfg, tmp_path / "tiny-clip")
    spec = ModelSpec("open-clip", str(folder))
    av = availability(spec)
    assert av.present and av.size_bytes > 0
    loaded = load(spec, Runtime())
    assert loaded.weights_are_real and loaded.mean == oc.OPENAI_MEAN
    pixels = loaded.preprocess(IMAGES)
    with torch.no_grad():
        assert torch.equal(loaded.model.encode_image(pixels), model.encode_image(pixels))
    assert torch.allclose(loaded.encode_text(["a photo of a screw."]),
                          model.encode_text(loaded.tokenize(["a photo of a screw."])), atol=1e-6)


def test_open_clip_missing_weights_are_reported(tmp_path, monkeypatch):
    _empty_caches(tmp_path, monkeypatch)
    av = availability(oc.CLIP_B16_PLUS_240)
    assert not av.present
    assert "vit_base_patch16_plus_clip_240.laion400m_e31" in av.how_to_get
    with pytest.raises(MissingWeightsError, match="laion400m_e31"):
        oc.load(oc.CLIP_B16_PLUS_240, Runtime())
    with pytest.raises(MissingWeightsError):
        oc.load(ModelSpec("open-clip", str(tmp_path / "nope.pt"), variant="ViT-B-16-plus-240"), Runtime())
    with pytest.raises(UserError, match="nor a pretrained tag"):
        oc.load(ModelSpec("open-clip", "no_such_tag", variant="ViT-B-16-plus-240"), Runtime())
    assert not availability(ModelSpec("open-clip", "no_such_tag", variant="ViT-B-16-plus-240")).present


# --- clipseg ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_seg():
    return load(cs.CLIPSEG_RD64_REFINED, TINY)


def test_clipseg_tiny_config_is_valid():
    config = cs.tiny_config(600, 512, 513)
    assert all(0 <= i < config.vision_config.num_hidden_layers for i in config.extract_layers)
    assert config.use_complex_transposed_convolution


def test_clipseg_segment_equals_the_full_forward(tiny_seg):
    prompts = ["abnormal", "defect"]
    logits = tiny_seg.segment(IMAGES, prompts)
    assert logits.shape == (2, 2, 352, 352) and logits.dtype == np.float32
    pix = tiny_seg.pixel_values(IMAGES)
    for i in range(2):
        for j, prompt in enumerate(prompts):
            tok = tiny_seg.tokenizer([prompt], return_tensors="pt")
            with torch.no_grad():
                ref = tiny_seg.model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"],
                                     pixel_values=pix[i:i + 1]).logits.numpy().reshape(352, 352)
            np.testing.assert_allclose(logits[i, j], ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_clipseg_processor_normalises_like_the_refined_checkpoint(tiny_seg):
    img = np.full((10, 12, 3), 255, np.uint8)
    pix = tiny_seg.pixel_values([img])
    assert pix.shape == (1, 3, 352, 352)
    expected = (1.0 - np.array(cs.IMAGENET_MEAN)) / np.array(cs.IMAGENET_STD)
    np.testing.assert_allclose(pix[0, :, 100, 100].numpy(), expected, rtol=1e-5)


def test_clipseg_round_trip_save_pretrained(tiny_seg, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    tiny_seg.model.save_pretrained(tmp_path)
    tiny_seg.processor.save_pretrained(tmp_path)
    spec = ModelSpec("clipseg", str(tmp_path))
    assert availability(spec).present
    loaded = load(spec, Runtime())
    assert loaded.weights_are_real and loaded.input_size == (352, 352)
    ref = tiny_seg.segment(IMAGES[:1], ["defect"])
    # same weights; from_pretrained may pick another attention kernel (sdpa vs eager): float rounding only
    np.testing.assert_allclose(loaded.segment(IMAGES[:1], ["defect"]), ref, rtol=1e-5, atol=1e-5 * np.abs(ref).max())


def test_clipseg_missing_and_wrong_revision(tmp_path, monkeypatch):
    _empty_caches(tmp_path, monkeypatch)
    av = availability(cs.CLIPSEG_RD64_REFINED)
    assert not av.present and av.how_to_get == ("hf download CIDAS/clipseg-rd64-refined --revision "
                                                "8bef68afb9ebcbb7b153eee19f49aedb58e3f083")
    with pytest.raises(MissingWeightsError, match="hf download"):
        cs.load(cs.CLIPSEG_RD64_REFINED, Runtime())
    with pytest.raises(MissingWeightsError):
        cs.load(ModelSpec("clipseg", str(tmp_path / "absent")), Runtime())
    # the first processor upload normalised with CLIP's constants: refused for CIDAS checkpoints
    _, processor = cs.build_tiny()
    processor.image_processor.image_mean = list(oc.OPENAI_MEAN)
    processor.image_processor.image_std = list(oc.OPENAI_STD)
    with pytest.raises(UserError, match="ImageNet"):
        cs._check_normalisation(ModelSpec("clipseg", "CIDAS/clipseg-rd64-refined", revision="91cddba"), processor)


# --- clip-tagger -----------------------------------------------------------------------------------
def test_clip_tagger_deterministic_order(tiny_clip):
    tagger = load(clip_tagger.CLIP_TAGGER, TINY)
    assert isinstance(tagger, clip_tagger.Tagger) and tagger.clip is tiny_clip
    tags = tagger.tag(IMAGES)
    assert len(tags) == 2 and all(1 <= len(t) <= tagger.top_k for t in tags)
    assert tags == tagger.tag(IMAGES)
    probs = tagger.probabilities(IMAGES)
    for row, chosen in zip(probs, tags):
        ranked = sorted(tagger.vocabulary, key=lambda t: (-row[tagger.vocabulary.index(t)], t))
        assert chosen == ranked[:len(chosen)]
    # threshold 0 keeps exactly top_k; threshold above 1 keeps min_tags
    assert all(len(t) == 5 for t in tagger.tag(IMAGES, top_k=5, threshold=0.0))
    assert all(len(t) == 1 for t in tagger.tag(IMAGES, threshold=1.1))
    assert tagger.tag([]) == []


def test_clip_tagger_vocabulary_file(tmp_path, tiny_clip):
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("# objects\nscrew\n\nmetal nut\ncable\n")
    spec = ModelSpec("clip-tagger", oc.CLIP_B16_PLUS_240.source, variant=oc.CLIP_B16_PLUS_240.variant,
                     filename=str(vocab))
    tagger = load(spec, TINY)
    assert tagger.vocabulary == ["screw", "metal nut", "cable"]
    assert set(tagger.tag(IMAGES[:1], top_k=3, threshold=0.0)[0]) == {"screw", "metal nut", "cable"}
    vocab.write_text("screw\nscrew\n")
    with pytest.raises(UserError, match="duplicate"):
        clip_tagger.read_vocabulary(vocab)
    assert not availability(ModelSpec("clip-tagger", "laion400m_e31", variant="ViT-B-16-plus-240",
                                      filename=str(tmp_path / "absent.txt"))).present
    assert len(set(clip_tagger.DEFAULT_VOCABULARY)) == len(clip_tagger.DEFAULT_VOCABULARY)


def _fake_hub_snapshot(cache: str, repo: str, revision: str) -> Path:
    """The folder a Hugging Face cache keeps a repo's files in, for one commit."""
    root = Path(cache) / f"models--{repo.replace('/', '--')}"
    (root / "refs").mkdir(parents=True, exist_ok=True)
    (root / "refs" / "main").write_text(revision)
    snap = root / "snapshots" / revision
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def test_clipseg_default_spec_loads_offline_from_the_hf_cache(tiny_seg, tmp_path, monkeypatch):
    """The pinned hub id resolves through the local cache (no network), processor constants checked."""
    _empty_caches(tmp_path, monkeypatch)
    import huggingface_hub.constants

    snap = _fake_hub_snapshot(huggingface_hub.constants.HF_HUB_CACHE, cs.CLIPSEG_RD64_REFINED.source,
                              cs.CLIPSEG_RD64_REFINED.revision)
    tiny_seg.model.save_pretrained(snap)
    tiny_seg.processor.save_pretrained(snap)
    av = availability(cs.CLIPSEG_RD64_REFINED)
    assert av.present and str(snap) in av.location
    loaded = cs.load(cs.CLIPSEG_RD64_REFINED, Runtime())
    assert loaded.image_mean == cs.IMAGENET_MEAN and loaded.input_size == (352, 352)


def test_open_clip_tag_found_in_the_hf_cache(tmp_path, monkeypatch):
    _empty_caches(tmp_path, monkeypatch)
    import huggingface_hub.constants

    snap = _fake_hub_snapshot(huggingface_hub.constants.HF_HUB_CACHE,
                              "timm/vit_base_patch16_plus_clip_240.laion400m_e31", "0" * 40)
    (snap / "open_clip_pytorch_model.bin").write_bytes(b"x" * 10)
    av = availability(oc.CLIP_B16_PLUS_240)
    assert av.present and av.location == str(snap / "open_clip_pytorch_model.bin") and av.size_bytes == 10
