"""MLflow: one parent run per (method, dataset), one child per category, with params, metrics, artifacts."""
from __future__ import annotations

import math

import pytest

from zsasbench.runner import DatasetRef, RunOptions, Runner


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("tracked")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    opts = RunOptions(methods=["local-contrast", "random"],
                      datasets=[DatasetRef("synthetic", tmp / "synthetic")], categories=["fabric", "washer"],
                      limit=8, runs_dir=tmp / "runs", tracking_uri=uri)
    from zsasbench.datasets.synthetic import SyntheticDataset

    SyntheticDataset(tmp / "synthetic")
    summary = Runner(opts).run()
    return uri, summary


def test_parent_and_child_runs_with_params_metrics_artifacts(finished_run):
    import mlflow
    from mlflow.tracking import MlflowClient

    uri, summary = finished_run
    assert summary.ok
    mlflow.set_tracking_uri(uri)
    df = mlflow.search_runs(experiment_names=["zsasbench"])
    parents = df[df["tags.zsasbench.level"] == "parent"]
    children = df[df["tags.zsasbench.level"] == "category"]
    assert sorted(parents["tags.method"]) == ["local-contrast", "random"]
    assert len(children) == 4
    client = MlflowClient(uri)
    for _, parent in parents.iterrows():
        assert parent["status"] == "FINISHED"
        for key in ("params.seed", "params.protocol.eval_size", "params.dataset.root", "params.version.mlflow",
                    "params.harness.git_commit", "params.models.profile"):
            assert isinstance(parent[key], str) and parent[key], key
        assert 0 <= parent["metrics.pixel_ap"] <= 1 and 0 <= parent["metrics.pixel_f1_max"] <= 1
        assert parent["metrics.n_images"] == 16
        kids = children[children["tags.mlflow.parentRunId"] == parent["run_id"]]
        assert sorted(kids["tags.category"]) == ["fabric", "washer"]
        assert parent["metrics.pixel_ap"] == pytest.approx(kids["metrics.pixel_ap"].mean())
        for _, kid in kids.iterrows():
            names = {a.path for a in client.list_artifacts(kid["run_id"], "figures")}
            cat = kid["tags.category"]
            assert {f"figures/pr_curve_{cat}.png", f"figures/qualitative_{cat}.png"} <= names
            assert kid["metrics.seconds_per_image"] >= 0
        top = {a.path for a in client.list_artifacts(parent["run_id"])}
        assert "config.json" in top
    lc = parents[parents["tags.method"] == "local-contrast"].iloc[0]
    assert lc["params.method.windows"] == "[5, 11]"
    assert lc["tags.weights"] == "real"


def test_rerun_reuses_categories_and_still_logs_their_figures(finished_run, tmp_path_factory):
    from mlflow.tracking import MlflowClient

    uri, first = finished_run
    opts = RunOptions(methods=["local-contrast"], datasets=[DatasetRef("synthetic", first_root(uri) / "synthetic")],
                      categories=["fabric"], limit=8, runs_dir=first_root(uri) / "runs", tracking_uri=uri)
    again = Runner(opts).run()
    (o,) = again.outcomes
    assert o.status == "reused" and o.n_predicted == 0
    before = next(x for x in first.outcomes if x.method == "local-contrast" and x.category == "fabric")
    assert o.metrics == before.metrics
    client = MlflowClient(uri)
    run_id = again.parent_run_ids[("local-contrast", "synthetic")]
    exp = client.get_run(run_id).info.experiment_id
    (kid,) = client.search_runs([exp], filter_string=f"tags.`mlflow.parentRunId` = '{run_id}'")
    names = {a.path for a in client.list_artifacts(kid.info.run_id, "figures")}
    assert "figures/pr_curve_fabric.png" in names and "figures/qualitative_fabric.png" in names


def first_root(uri: str):
    from pathlib import Path

    return Path(uri[len("sqlite:///"):]).parent


def test_failure_in_one_category_is_isolated(tmp_path):
    """An exception in one category ends its child run FAILED with the traceback; the rest go on."""
    from mlflow.tracking import MlflowClient

    from zsasbench.runner import RunOptions

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from zsasbench.datasets.synthetic import SyntheticDataset

    SyntheticDataset(tmp_path / "syn")
    opts = RunOptions(methods=["local-contrast"], datasets=[DatasetRef("synthetic", tmp_path / "syn")],
                      limit=4, runs_dir=tmp_path / "runs", tracking_uri=uri)
    runner = Runner(opts)
    original = runner._predict_missing

    def flaky(method, ref, ds, category, missing, cache):
        if category == "granite":
            raise RuntimeError("simulated crash in granite")
        return original(method, ref, ds, category, missing, cache)

    runner._predict_missing = flaky
    summary = runner.run()
    status = {o.category: o.status for o in summary.outcomes}
    assert status == {"fabric": "ok", "granite": "failed", "washer": "ok"}
    assert "simulated crash" in summary.failures[0].error
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("zsasbench")
    failed = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FAILED'")
    kinds = {r.data.tags["zsasbench.level"]: r for r in failed}
    assert set(kinds) == {"category", "parent"}  # the parent is marked FAILED: its mean is incomplete
    child = kinds["category"]
    assert child.data.tags["category"] == "granite"
    text = client.download_artifacts(child.info.run_id, "traceback.txt", str(tmp_path))
    assert "simulated crash in granite" in open(text).read()
    assert not math.isnan(summary.dataset_means[("local-contrast", "synthetic")]["pixel_ap"])
