"""timm backbones: variant parsing, tiny-random WideResNet-50 shapes, and weights loaded offline from a
local checkpoint file and from a hub-cache snapshot through the real loader."""
from __future__ import annotations

import pytest
import torch
from modelzoo_helpers import fake_hub_snapshot

from zsasbench.errors import MissingWeightsError, UserError
from zsasbench.models import ModelSpec, Runtime, availability, load
from zsasbench.models.timm_backbone import WIDE_RESNET50, TimmOptions, parse_variant


def test_parse_variant():
    assert parse_variant("features_only:1,2,3") == TimmOptions(None, True, (1, 2, 3))
    assert parse_variant("arch=resnet18; features_only") == TimmOptions("resnet18", True, None)
    assert parse_variant(None) == TimmOptions() and TimmOptions().create_kwargs() == {}
    assert parse_variant("features_only:2").create_kwargs() == {"features_only": True, "out_indices": (2,)}
    with pytest.raises(UserError, match="integers"):
        parse_variant("features_only:a,b")
    with pytest.raises(UserError, match="unknown option"):
        parse_variant("pretrained")


def test_tiny_random_wide_resnet_has_the_real_feature_layout():
    net = load(WIDE_RESNET50, Runtime(profile="tiny-random"))
    assert not net.training
    assert net.feature_info.channels() == [256, 512, 1024]  # as the real wide_resnet50_2 stages 1-3
    assert net.feature_info.reduction() == [4, 8, 16]
    x = torch.randn(1, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        feats = net(x)
    assert [tuple(f.shape) for f in feats] == [(1, 256, 16, 24), (1, 512, 8, 12), (1, 1024, 4, 6)]
    again = load(WIDE_RESNET50, Runtime(profile="tiny-random", device="auto"))
    with torch.inference_mode():
        assert torch.equal(again(x)[2], feats[2])  # seeded


def _small_net():
    import timm

    torch.manual_seed(3)
    return timm.create_model("resnet18", pretrained=False).eval()


def _features(net, x):
    with torch.inference_mode():
        return net(x)


def test_local_checkpoint_file(tmp_path):
    import timm

    full = _small_net()
    path = tmp_path / "my_backbone.pth"
    torch.save(full.state_dict(), path)
    spec = ModelSpec("timm", str(path), variant="arch=resnet18;features_only:1,2,3")
    assert availability(spec).present
    net = load(spec, Runtime())
    ref = timm.create_model("resnet18", pretrained=False, features_only=True, out_indices=(1, 2, 3))
    wanted = ref.state_dict().keys()  # features_only 1-3 drops layer4 and the classifier
    ref.load_state_dict({k: v for k, v in full.state_dict().items() if k in wanted}, strict=True)
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    for got, want in zip(_features(net, x), _features(ref.eval(), x)):
        assert torch.equal(got, want)
    with pytest.raises(UserError, match="timm architecture"):
        load(ModelSpec("timm", str(path), variant="features_only:1"), Runtime())


def test_timm_name_loads_from_hub_cache(tmp_path, monkeypatch):
    from safetensors.torch import save_file

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    full = _small_net()
    snap = fake_hub_snapshot(tmp_path, "timm/resnet18.a1_in1k", "2" * 40)
    save_file(full.state_dict(), str(snap / "model.safetensors"))
    spec = ModelSpec("timm", "resnet18.a1_in1k")
    av = availability(spec)
    assert av.present and av.location == str(snap)
    net = load(spec, Runtime())
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        assert torch.equal(net(x), full(x))
    # the same snapshot named as a hub repository: its config.json names the architecture
    (snap / "config.json").write_text('{"architecture": "resnet18", "num_classes": 1000}')
    by_repo = load(ModelSpec("timm", "timm/resnet18.a1_in1k", variant="features_only:3"), Runtime())
    with torch.inference_mode():
        assert by_repo(x)[0].shape == (1, 256, 2, 2)


def test_missing_and_unknown(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    av = availability(WIDE_RESNET50)
    assert not av.present and av.how_to_get == "hf download timm/wide_resnet50_2.racm_in1k"
    with pytest.raises(MissingWeightsError, match="hf download timm/wide_resnet50_2.racm_in1k"):
        load(WIDE_RESNET50, Runtime())
    with pytest.raises(UserError, match="unknown timm model"):
        availability(ModelSpec("timm", "no_such_net_v9"))
    with pytest.raises(MissingWeightsError, match="backbone.pth"):
        load(ModelSpec("timm", str(tmp_path / "backbone.pth"), variant="arch=resnet18"), Runtime())
