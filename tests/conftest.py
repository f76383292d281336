"""Test configuration: offline hub, temporary MLflow store, paths to the shared fixtures and data."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one torch thread each (two-thread torch competing for cores is 4-6x slower).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("ZSAS_SHARED", REPO.parent / "shared"))
FIXTURES = SHARED / "fixtures"
MTD_SAMPLE = SHARED / "data" / "mtd-sample"


def fixture_dir(name: str) -> Path:
    """The parity fixture folder `name`, or skip the test (with the reason) when it is absent."""
    path = FIXTURES / name
    if not path.is_dir():
        pytest.skip(f"parity fixture folder {path} is absent")
    return path


@pytest.fixture
def mtd_sample() -> Path:
    if not MTD_SAMPLE.is_dir():
        pytest.skip(f"real MTD sample {MTD_SAMPLE} is absent")
    return MTD_SAMPLE


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    """A temporary MLflow SQLite store; MLFLOW_TRACKING_URI points at it for the test."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
