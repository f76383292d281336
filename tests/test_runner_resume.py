"""Resume: a run killed mid-category and started again predicts nothing twice and ends with the
same metrics as an uninterrupted run."""
from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter

import pytest

from helpers_cli import cli_env, install_demo_plugin, run_cli, zsasbench_cmd
from zsasbench.datasets.synthetic import SyntheticDataset

pytestmark = pytest.mark.slow


def _final_metrics(runs_dir):
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{runs_dir / 'mlflow.db'}")
    exp = client.get_experiment_by_name("zsasbench")
    runs = client.search_runs([exp.experiment_id], filter_string="tags.`zsasbench.level` = 'category' "
                              "and attributes.status = 'FINISHED'", order_by=["attributes.start_time DESC"])
    latest = {}
    for r in runs:
        latest.setdefault(r.data.tags["category"], r.data.metrics)
    return latest


def test_killed_run_resumes_without_predicting_twice(tmp_path):
    data = tmp_path / "synthetic"
    SyntheticDataset(data)
    site = install_demo_plugin(tmp_path / "site")
    log = tmp_path / "predictions.log"
    env = cli_env(site, ZSAS_DEMO_LOG=str(log))
    args = ["run", "--method", "counting", "--dataset", f"synthetic={data}", "--category", "fabric",
            "--category", "granite", "--set", "sleep=0.05", "--batch-size", "1", "--no-leaderboard"]

    runs = tmp_path / "runs"
    proc = subprocess.Popen(zsasbench_cmd(*args, "--runs-dir", str(runs)), cwd=tmp_path, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill once 40 of the 60 maps are predicted: inside the second category
        if log.exists() and len(log.read_text().splitlines()) >= 40:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = log.read_text().splitlines()
    assert 40 <= len(before) < 60, f"the run was not killed mid-way ({len(before)} predictions)"

    done = run_cli(*args, "--runs-dir", str(runs), cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stderr
    lines = log.read_text().splitlines()
    counts = Counter(lines)
    assert len(lines) == 60, f"expected 60 predictions over both runs, got {len(lines)}"
    assert max(counts.values()) == 1, f"predicted twice: {[k for k, v in counts.items() if v > 1][:3]}"

    # A third run reuses every finished category: no prediction at all.
    again = run_cli(*args, "--runs-dir", str(runs), cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert len(log.read_text().splitlines()) == 60

    reference = run_cli(*args, "--runs-dir", str(tmp_path / "runs_ref"), cwd=tmp_path,
                        env=cli_env(site, ZSAS_DEMO_LOG=str(tmp_path / "ref.log")))
    assert reference.returncode == 0, reference.stderr
    resumed, uninterrupted = _final_metrics(runs), _final_metrics(tmp_path / "runs_ref")
    assert set(resumed) == {"fabric", "granite"}
    for cat in resumed:
        for key in ("pixel_ap", "pixel_f1_max", "pixel_auroc"):
            assert resumed[cat][key] == pytest.approx(uninterrupted[cat][key], abs=1e-12), (cat, key)


def test_cache_write_is_atomic(tmp_path, monkeypatch):
    """A write interrupted before its rename leaves no file that reads back as a map."""
    import numpy as np

    from zsasbench import cache as cache_mod

    cc = cache_mod.CategoryCache(tmp_path)

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(cache_mod.os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        cc.save_map("a/b.png", np.ones((4, 5), np.float32))
    assert not cc.has_map("a/b.png")
    assert cc.load_map("a/b.png") is None
    assert not any(p.suffix == ".npy" for p in tmp_path.rglob("*"))
    assert not list(tmp_path.rglob("*.tmp"))
