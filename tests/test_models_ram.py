"""RAM / RAM++ port: Swin building blocks against independent definitions, the tiny-random profile, the
official-checkpoint loading path through a file and through the family loader, and its error messages.
The full-size numbers are checked against the official implementation in test_models_ram_parity.py."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import fixture_dir
from zsasbench.errors import DataError, MissingWeightsError, UserError
from zsasbench.models import ModelSpec, Runtime, availability, clear_cache, load
from zsasbench.models import ram as ram_mod
from zsasbench.models.ram import (RAM_PLUS_SWIN_L, RAM_SWIN_L, TAG_LIST_FILE, THRESHOLD_FILE, TINY_TAGS, RamTagger,
                                  load_ram_tagger, parse_variant, preprocess, random_state_dict, ram_config,
                                  tiny_random_tagger)
from zsasbench.models.ram_swin import (PatchMerging, SwinConfig, SwinEncoder, relative_position_index,
                                       shift_attention_mask)


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The tiny models' ops are too small to gain from threads; on a loaded 2-core machine, two threads
    per op cost 10x more in waiting than they save."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _images(n=3, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 7 * i, 55 + 3 * i, 3), dtype=np.uint8) for i in range(n)]


# ------------------------------------------------------------------ Swin pieces

def test_relative_position_index_matches_readme_formula():
    w = 12
    idx = relative_position_index(w)
    assert idx.shape == (w * w, w * w) and idx.dtype == torch.int64
    for i, j in [(0, 0), (0, 143), (143, 0), (13, 50), (77, 5)]:
        dh, dw = i // w - j // w, i % w - j % w  # query - key
        assert idx[i, j] == (dh + 11) * 23 + (dw + 11)
    assert idx.min() == 0 and idx.max() == 528 and len(idx.unique()) == 529


@pytest.mark.parametrize("grid,window,shift", [(6, 3, 1), (24, 12, 6), (8, 4, 2)])
def test_shift_mask_separates_exactly_the_wrapped_tokens(grid, window, shift):
    mask = shift_attention_mask(grid, grid, window, shift, -100.0).numpy()
    assert mask.shape == ((grid // window) ** 2, window * window, window * window)
    for wi in range(mask.shape[0]):
        r0, c0 = (wi // (grid // window)) * window, (wi % (grid // window)) * window
        cells = [(r0 + t // window, c0 + t % window) for t in range(window * window)]
        # in the rolled grid, a token at row r came across the border iff r >= grid - shift
        wrap = [(r >= grid - shift, c >= grid - shift) for r, c in cells]
        for p in range(len(cells)):
            for q in range(len(cells)):
                assert mask[wi, p, q] == (-100.0 if wrap[p] != wrap[q] else 0.0)


def test_patch_merging_channel_order():
    cfg = SwinConfig(image_size=16, embed_dim=2, depths=(1, 1), num_heads=(1, 1), window_size=2)
    merge = PatchMerging(cfg, dim=2, grid=4)
    merge.norm, merge.reduction = torch.nn.Identity(), torch.nn.Identity()
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    x = torch.stack([rows, cols], dim=-1).reshape(1, 16, 2)
    out = merge(x).reshape(2, 2, 4, 2)
    for i in range(2):
        for j in range(2):
            blocks = [tuple(v.tolist()) for v in out[i, j]]
            assert blocks == [(2 * i, 2 * j), (2 * i + 1, 2 * j), (2 * i, 2 * j + 1), (2 * i + 1, 2 * j + 1)]


def test_tiny_swin_structure_and_pooled_token():
    cfg = ram_config("ram", "tiny", 4).swin
    enc = SwinEncoder(cfg).eval()
    shifts = [[b.shift for b in stage.blocks] for stage in enc.layers]
    windows = [[b.window for b in stage.blocks] for stage in enc.layers]
    assert shifts == [[0, 1], [0, 1], [0, 1], [0, 0]]  # last grid (3) equals the window: no shift, no mask
    assert windows == [[3, 3]] * 4
    assert enc.layers[3].blocks[1].attn_mask is None and enc.layers[2].blocks[1].attn_mask.shape == (4, 9, 9)
    with torch.no_grad():
        out = enc(torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (2, 1 + 9, cfg.num_features)
    torch.testing.assert_close(out[:, 0], out[:, 1:].mean(dim=1))
    with pytest.raises(ValueError, match="96x96"):
        enc(torch.zeros(1, 3, 64, 64))


def test_ram_plus_reweighting_matches_upstream_loop():
    tagger = tiny_random_tagger("ram_plus")
    net = tagger.net
    image_embeds = torch.randn(2, 10, net.cfg.embed_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        weights, embeds = net.reweight_labels(image_embeds)
        k, d = net.cfg.num_classes, net.cfg.descriptions_per_class
        cls = image_embeds[:, 0] / image_embeds[:, 0].norm(dim=-1, keepdim=True)
        sims = (net.reweight_scale.exp() * cls @ net.label_embed.t()).view(2, k, d)
        ref_w = torch.softmax(sims, dim=2)
        ref_e = torch.stack([(ref_w[b].unsqueeze(-1) * net.label_embed.view(k, d, -1)).sum(dim=1) for b in range(2)])
    torch.testing.assert_close(weights, ref_w)
    torch.testing.assert_close(embeds, ref_e)


# ------------------------------------------------------------------ tiny-random profile and the Tagger

@pytest.mark.parametrize("spec", [RAM_SWIN_L, RAM_PLUS_SWIN_L], ids=["ram", "ram_plus"])
def test_tiny_random_profile_tags_deterministically(spec):
    clear_cache()
    tagger = load(spec, Runtime(profile="tiny-random"))
    assert isinstance(tagger, RamTagger) and not tagger.weights_are_real
    assert tagger.variant == parse_variant(spec.variant)[0]
    images = _images()
    tags = tagger.tag(images)
    probs = tagger.probabilities(images)
    assert len(tags) == 3 and any(tags)
    for row, names in zip(probs, tags):
        order = [(-float(row[TINY_TAGS.index(n)]), n) for n in names]
        assert order == sorted(order)
        assert set(names) == {n for i, n in enumerate(TINY_TAGS) if row[i] > 0.68}
    clear_cache()
    again = load(spec, Runtime(profile="tiny-random"))
    assert again is not tagger and again.tag(images) == tags
    np.testing.assert_array_equal(again.probabilities(images), probs)
    # batching does not change results
    again.batch_size = 1
    np.testing.assert_allclose(again.probabilities(images), probs, atol=1e-6)


def test_preprocess_follows_upstream_transform():
    from PIL import Image

    image = _images(1)[0]
    got = preprocess([image], 32)
    ref = np.asarray(Image.fromarray(image).resize((32, 32), Image.BILINEAR), dtype=np.float32) / 255.0
    ref = (ref - [0.485, 0.456, 0.406]) / [0.229, 0.224, 0.225]
    np.testing.assert_allclose(got[0].numpy(), ref.transpose(2, 0, 1), atol=1e-6)
    for bad in [image[..., 0], image.astype(np.float32), image[..., :2]]:
        with pytest.raises(UserError, match="HxWx3 uint8"):
            preprocess([bad], 32)


def test_ram_parity_preprocessing():
    """The port's preprocessing on the fixture PNGs vs. upstream get_transform(384) (README: 1e-5)."""
    folder = fixture_dir("ram")
    from PIL import Image

    expected = np.load(folder / "expected.npz")["input"]
    images = [np.asarray(Image.open(folder / f"input_{i}.png").convert("RGB")) for i in range(2)]
    err = np.abs(preprocess(images, 384).numpy() - expected).max()
    print(f"max|input| = {err:.3e}")
    assert err <= 1e-5


# ------------------------------------------------------------------ official-checkpoint path

def _write_tiny_checkpoint(folder, variant="ram", thresholds=None, mutate=None, name="tiny.pth"):
    cfg = ram_config(variant, "tiny", len(TINY_TAGS), 3 if variant == "ram_plus" else 1)
    state = random_state_dict(cfg, seed=0)
    if mutate:
        mutate(state)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": 3, "config": {"lr": 1e-4}}, folder / name)
    (folder / TAG_LIST_FILE).write_text("\n".join(TINY_TAGS) + "\n", encoding="utf-8")
    thr = thresholds if thresholds is not None else [0.68] * len(TINY_TAGS)
    (folder / THRESHOLD_FILE).write_text("\n".join(str(t) for t in thr) + "\n", encoding="utf-8")
    return folder / name


def _upstream_style(state):
    """What an official checkpoint carries beyond the tagging path: derived buffers, the caption branch with
    the tied twins, and (old checkpoints) the legacy `vision_multi` prefix."""
    for key in [k for k in state if k.startswith("tagging_head.")]:
        state["tag_encoder." + key[len("tagging_head."):]] = state[key]
    state["tag_encoder.embeddings.word_embeddings.weight"] = torch.zeros(7, 32)
    state["text_decoder.cls.predictions.bias"] = torch.zeros(7)
    state["visual_encoder.layers.0.blocks.0.attn.relative_position_index"] = torch.zeros(3, dtype=torch.long)
    state["visual_encoder.layers.0.blocks.1.attn_mask"] = torch.zeros(1)
    key = "tagging_head.encoder.layer.1.output.dense.weight"
    state[key.replace("tagging_head", "vision_multi")] = state.pop(key)


@pytest.mark.parametrize("variant", ["ram", "ram_plus"])
def test_checkpoint_file_loads_through_family_loader(tmp_path, variant):
    thr = [round(0.5 + 0.01 * i, 2) for i in range(len(TINY_TAGS))]
    ckpt = _write_tiny_checkpoint(tmp_path / "w", variant, thresholds=thr, mutate=_upstream_style)
    spec = ModelSpec("ram", str(tmp_path / "w"), filename=ckpt.name, variant=f"{variant}:tiny")
    av = availability(spec)
    assert av.present and av.location == str(ckpt) and av.size_bytes == ckpt.stat().st_size
    clear_cache()
    tagger = load(spec, Runtime())
    assert tagger.weights_are_real and tagger.tag_names == list(TINY_TAGS)
    np.testing.assert_array_equal(tagger.thresholds, np.asarray(thr, np.float32))
    reference = tiny_random_tagger(variant)
    images = _images(2)
    np.testing.assert_array_equal(tagger.probabilities(images), reference.probabilities(images))
    # the checkpoint file itself as source
    direct = load(dataclasses.replace(spec, source=str(ckpt), filename=None), Runtime())
    np.testing.assert_array_equal(direct.probabilities(images), reference.probabilities(images))
    clear_cache()


def test_tied_tagging_head_tensor_is_taken_from_its_tag_encoder_twin(tmp_path):
    def drop_canonical(state):
        key = "tagging_head.encoder.layer.0.intermediate.dense.weight"
        state["tag_encoder.encoder.layer.0.intermediate.dense.weight"] = state.pop(key)

    ckpt = _write_tiny_checkpoint(tmp_path, mutate=drop_canonical)
    tagger = load_ram_tagger(ckpt, "ram:tiny")
    images = _images(1)
    np.testing.assert_array_equal(tagger.probabilities(images), tiny_random_tagger("ram").probabilities(images))


def test_hub_cache_checkpoint_with_tag_files_beside_it(tmp_path, monkeypatch):
    import huggingface_hub.constants as hf_constants

    snapshot = tmp_path / "models--xinyu1205--recognize_anything_model" / "snapshots" / ("a" * 40)
    _write_tiny_checkpoint(snapshot, name=RAM_SWIN_L.filename)
    (tmp_path / "models--xinyu1205--recognize_anything_model" / "refs").mkdir()
    (tmp_path / "models--xinyu1205--recognize_anything_model" / "refs" / "main").write_text("a" * 40)
    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    spec = dataclasses.replace(RAM_SWIN_L, variant="ram:tiny")
    av = availability(spec)
    assert av.present and av.location == str(snapshot / RAM_SWIN_L.filename)
    clear_cache()
    assert load(spec, Runtime()).tag_names == list(TINY_TAGS)
    clear_cache()
    (snapshot / THRESHOLD_FILE).unlink()
    av = availability(spec)
    assert not av.present and THRESHOLD_FILE in av.how_to_get and str(snapshot) in av.how_to_get


@pytest.mark.parametrize("spec", [RAM_SWIN_L, RAM_PLUS_SWIN_L], ids=["ram", "ram_plus"])
def test_missing_hub_weights_are_reported_with_the_command(tmp_path, monkeypatch, spec):
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path))
    av = availability(spec)
    assert not av.present and av.size_bytes is None
    assert f"hf download {spec.source} {spec.filename}" in av.how_to_get
    assert "ram/data/ram_tag_list.txt" in av.how_to_get and THRESHOLD_FILE in av.how_to_get
    clear_cache()
    with pytest.raises(MissingWeightsError, match="hf download"):  # tests run with HF_HUB_OFFLINE=1
        load(spec, Runtime())


def test_missing_local_weights_are_reported_with_the_urls(tmp_path):
    spec = ModelSpec("ram", str(tmp_path / "nothing"), filename="ram_plus_swin_large_14m.pth", variant="ram_plus")
    av = availability(spec)
    assert not av.present and av.location == str(tmp_path / "nothing" / "ram_plus_swin_large_14m.pth")
    assert ("https://huggingface.co/xinyu1205/recognize-anything-plus-model/resolve/main/"
            "ram_plus_swin_large_14m.pth") in av.how_to_get
    with pytest.raises(MissingWeightsError, match="not found"):
        load(spec, Runtime())
    with pytest.raises(MissingWeightsError, match="ram_plus_swin_large_14m.pth not found; get it from https"):
        load_ram_tagger(tmp_path / "ram_plus_swin_large_14m.pth", "ram_plus")


# ------------------------------------------------------------------ bad input

def _drop(key):
    return lambda state: state.pop(key)


@pytest.mark.parametrize("mutate,variant,error,pattern", [
    (_drop("fc.weight"), "ram:tiny", UserError, r"missing, e\.g\. fc\.weight"),
    (lambda s: s.__setitem__("label_embed", torch.zeros(5, 16)), "ram:tiny", DataError, "does not fit"),
    (lambda s: s.__setitem__("visual_encoder.layers.0.blocks.0.attn.relative_position_bias_table",
                             torch.zeros(49, 1)), "ram:tiny", UserError, r"\(2\*window-1\)\^2"),
    (None, "ram_plus:tiny", UserError, "this is a ram checkpoint"),
    (None, "ram:swin_b", UserError, "unknown"),
])
def test_bad_checkpoints_raise_clear_errors(tmp_path, mutate, variant, error, pattern):
    ckpt = _write_tiny_checkpoint(tmp_path, mutate=mutate)
    with pytest.raises(error, match=pattern) as info:
        load_ram_tagger(ckpt, variant)
    if "unknown" not in pattern:
        assert str(ckpt) in str(info.value)


def test_bad_tag_files_raise_clear_errors(tmp_path):
    ckpt = _write_tiny_checkpoint(tmp_path)
    (tmp_path / THRESHOLD_FILE).write_text("0.5\n" * 3)
    with pytest.raises(DataError, match=f"{THRESHOLD_FILE}: 3 thresholds for 24 tags"):
        load_ram_tagger(ckpt, "ram:tiny")
    (tmp_path / THRESHOLD_FILE).write_text("0.5\nhigh\n")
    with pytest.raises(DataError, match=":2: 'high' is not a number"):
        load_ram_tagger(ckpt, "ram:tiny")
    (tmp_path / THRESHOLD_FILE).unlink()
    with pytest.raises(MissingWeightsError, match=THRESHOLD_FILE):
        load_ram_tagger(ckpt, "ram:tiny")
    assert load_ram_tagger(ckpt, "ram:tiny", thresholds=0.9).thresholds.tolist() == [np.float32(0.9)] * 24
    (tmp_path / TAG_LIST_FILE).write_text("a\n\nb\n")
    with pytest.raises(DataError, match=r"line\(s\) \[2\] are blank"):
        load_ram_tagger(ckpt, "ram:tiny", thresholds=0.5)
    (tmp_path / TAG_LIST_FILE).write_text("a\nb\n")
    with pytest.raises(DataError, match="does not fit the tag list's 2 tags"):
        load_ram_tagger(ckpt, "ram:tiny", thresholds=0.5)
    with pytest.raises(UserError, match="not a RAM checkpoint"):
        load_ram_tagger({"weights": {}}, "ram:tiny", tag_list=TINY_TAGS, thresholds=0.5)


def test_unknown_variant_and_dtype():
    with pytest.raises(UserError, match="variant 'tag2text' unknown"):
        parse_variant("tag2text")
    with pytest.raises(UserError, match="dtype 'int8' unknown"):
        tiny_random_tagger("ram", dtype="int8")
    assert ram_mod._checkpoint_name(ModelSpec("ram", "/x", variant="ram_plus")) == "ram_plus_swin_large_14m.pth"
