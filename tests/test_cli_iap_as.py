"""`zsasbench ablation` and `zsasbench prompts` end to end with tiny-random models."""
from __future__ import annotations

import json

import pytest

from helpers_cli import run_cli

pytestmark = pytest.mark.slow

SMALL = ["--set", "n_reference_images=2", "--set", "max_candidate_tags=3", "--set", "llm_max_new_tokens=8"]


def test_prompts_then_ablation(tmp_path):
    common = ["--dataset", "synthetic", "--category", "granite", "--models", "tiny-random", *SMALL]
    out = run_cli("prompts", "iap-as", *common, "--json", cwd=tmp_path, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    (row,) = json.loads(out.stdout)
    assert row["category"] == "granite" and row["object_tags"]
    assert row["final_prompt"].endswith(" .") and "abnormal . defect" in row["final_prompt"]
    table = run_cli("prompts", "iap-as", *common, cwd=tmp_path, timeout=900)  # reuses the saved Stage 1
    assert "| Dataset | Category | Object tag set | Final prompts |" in table.stdout
    assert row["final_prompt"] in table.stdout

    abl = run_cli("ablation", "iap-as", *common, "--limit", "2", cwd=tmp_path, timeout=1800)
    assert abl.returncode == 0, abl.stderr[-3000:]
    lines = [l for l in abl.stdout.splitlines() if l.startswith("| synthetic")]
    assert len(lines) == 6
    assert lines[0].split("|")[3:6] == [" no ", " no ", " no "] and lines[-1].split("|")[3:6] == [" yes ", " yes ", " yes "]

    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'runs' / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["zsasbench"], filter_string="tags.`zsasbench.level` = 'parent'")
    assert sorted(runs["tags.variant"]) == sorted(["fixed prompts", "+ filter", "+ tagging", "+ tagging + filter",
                                                   "+ tagging + LLM", "IAP-AS (tagging + LLM + filter)"])
    assert set(runs["params.method.use_llm"]) == {"true", "false"}


def test_prompts_for_other_methods_is_an_error(tmp_path):
    out = run_cli("prompts", "winclip", "--dataset", "synthetic", cwd=tmp_path)
    assert out.returncode == 2 and "prompts are produced by iap-as" in out.stderr
