"""Model-zoo shared helpers: source kinds, hub-cache lookup, the missing-weights message, `models` rows."""
from __future__ import annotations

import pytest
from modelzoo_helpers import fake_hub_snapshot

from zsasbench.errors import MissingWeightsError
from zsasbench.models import ModelSpec, Runtime, check_present, hub
from zsasbench.models.listing import COLUMNS, format_rows, model_rows


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    cache = tmp_path / "hub-cache"
    cache.mkdir()
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


@pytest.mark.parametrize("source,kind", [
    ("IDEA-Research/grounding-dino-tiny", "hub"),
    ("wide_resnet50_2", "hub"),
    ("/abs/missing/sam_vit_h_4b8939.pth", "local"),
    ("./rel/folder", "local"),
    ("~/models/x", "local"),
    ("weights/sam_vit_b_01ec64.pth", "local"),
    ("a/b/c", "local"),
    ("http://localhost:11434/v1", "url"),
    ("https://example.org/v1/chat/completions", "url"),
])
def test_source_kinds(source, kind):
    assert hub.is_url(source) == (kind == "url")
    assert hub.is_local(source) == (kind == "local")
    assert hub.is_hub_id(source) == (kind == "hub")


def test_existing_relative_folder_is_local(tmp_path, monkeypatch):
    (tmp_path / "org" / "name").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    assert hub.is_local("org/name")  # exists on disk: wins over the hub-id reading


def test_hub_snapshot_found_by_revision_and_branch(hf_cache):
    rev = "a" * 40
    snap = fake_hub_snapshot(hf_cache, "org/model", rev)
    (snap / "config.json").write_text("{}")
    (snap / "model.safetensors").write_bytes(b"x" * 1000)
    assert hub.hub_snapshot("org/model", rev) == snap
    assert hub.hub_snapshot("org/model", None) == snap  # refs/main -> rev
    assert hub.hub_snapshot("org/model", "b" * 40) is None  # another revision is not there
    assert hub.hub_snapshot("org/model", rev, ("config.json", "pytorch_model.bin|model.safetensors")) == snap
    assert hub.hub_snapshot("org/model", rev, ("config.json", "pytorch_model.bin")) is None
    av = hub.hub_availability("org/model", rev, ("config.json", "model.safetensors"))
    assert av.present and av.location == str(snap) and av.size_bytes == 1002


def test_hub_availability_absent_gives_exact_command(hf_cache):
    av = hub.hub_availability("org/absent", "c" * 40)
    assert not av.present and av.size_bytes is None
    assert av.how_to_get == f"hf download org/absent --revision {'c' * 40}"
    assert str(hf_cache) in av.location


def test_path_size_counts_files_once(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"1" * 10)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.bin").write_bytes(b"2" * 5)
    (tmp_path / "link.bin").symlink_to(tmp_path / "a.bin")
    assert hub.path_size(tmp_path) == 15
    assert hub.path_size(tmp_path / "sub" / "b.bin") == 5
    assert hub.human_size(1536) == "1.5 KB" and hub.human_size(None) == "?"


def test_require_present_offline_names_model_and_command(hf_cache):
    spec = ModelSpec("grounding-dino", "org/absent", revision="d" * 40, role="open-set detector")
    av = hub.hub_availability(spec.source, spec.revision)
    with pytest.raises(MissingWeightsError) as err:
        hub.require_present(spec, av)
    msg = str(err.value)
    assert "org/absent" in msg and "open-set detector" in msg and f"hf download org/absent --revision {'d' * 40}" in msg
    assert "HF_HUB_OFFLINE" in msg


def test_check_present_lists_every_missing_model(hf_cache, tmp_path):
    specs = [ModelSpec("grounding-dino", "org/gd-absent", role="detector"),
             ModelSpec("sam", str(tmp_path / "sam_vit_b_01ec64.pth"), role="segmenter")]
    with pytest.raises(MissingWeightsError) as err:
        check_present(specs, Runtime())
    msg = str(err.value)
    assert "org/gd-absent" in msg and "hf download org/gd-absent" in msg
    assert "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth" in msg
    check_present(specs, Runtime(profile="tiny-random"))  # random weights need nothing


def test_model_rows(hf_cache, tmp_path):
    ckpt = tmp_path / "sam_vit_h_4b8939.pth"
    ckpt.write_bytes(b"0" * 2048)
    present = ModelSpec("sam", str(ckpt), role="segmenter")
    absent = ModelSpec("grounding-dino", "org/absent", revision="e" * 40, role="detector")
    unknown = ModelSpec("no-such-family", "x")
    rows = model_rows([present, absent, present, unknown])
    assert [r["family"] for r in rows] == ["sam", "grounding-dino", "no-such-family"]  # deduped, in order
    assert set(COLUMNS) <= set(rows[0])
    assert rows[0]["present"] and rows[0]["size_bytes"] == 2048 and rows[0]["size"] == "2.0 KB"
    assert rows[0]["location"] == str(ckpt) and rows[0]["how_to_get"] == ""
    assert not rows[1]["present"] and rows[1]["how_to_get"].startswith("hf download org/absent --revision")
    assert not rows[2]["present"] and "unknown model family" in rows[2]["how_to_get"]
    table = format_rows(rows)
    assert "NO" in table and "yes" in table and "org/absent" in table
