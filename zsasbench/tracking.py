"""Everything MLflow: the store, experiments, parent/child runs, params, tags and artifacts."""
from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import tempfile
import traceback
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

DEFAULT_EXPERIMENT = "zsasbench"
DEFAULT_RUNS_DIR = Path("runs")
LEVEL_TAG = "zsasbench.level"  # "parent" (method x dataset) or "category"
PACKAGES = ("zsasbench", "numpy", "torch", "torchvision", "transformers", "open_clip_torch", "timm",
            "segment-anything", "scikit-learn", "mlflow")
MAX_PARAM_LEN = 6000


def quiet_mlflow_logs() -> None:
    """MLflow's INFO lines (database migrations) would drown the progress bars."""
    import logging

    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def default_tracking_uri(runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    return f"sqlite:///{(Path(runs_dir) / 'mlflow.db').resolve()}"


def resolve_tracking_uri(cli_uri: str | None, runs_dir: Path = DEFAULT_RUNS_DIR) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else runs/mlflow.db (never MLflow's cwd default)."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri(runs_dir)


def artifact_root_for(uri: str) -> str | None:
    """Local SQLite stores keep artifacts in an `artifacts/` folder beside the database."""
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        return (db.parent / "artifacts").resolve().as_uri()
    return None


def connect(uri: str, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Point MLflow at `uri`, check the store answers, and return the experiment id. Fails fast."""
    import mlflow
    from mlflow.tracking import MlflowClient

    quiet_mlflow_logs()
    if uri.startswith("sqlite:///"):
        db = Path(uri[len("sqlite:///"):])
        try:
            db.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"tracking store {uri}: cannot create folder {db.parent} ({exc})") from exc
    elif uri.startswith(("http://", "https://")):
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "10")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    try:
        exp = client.get_experiment_by_name(experiment)
        experiment_id = (client.create_experiment(experiment, artifact_location=artifact_root_for(uri))
                         if exp is None else exp.experiment_id)
        mlflow.set_experiment(experiment_id=experiment_id)
        return experiment_id
    except Exception as exc:  # MLflow raises many types here; all mean "unreachable or unusable"
        raise UserError(f"tracking store {uri} is not reachable: {_store_error(exc)}. "
                        f"Check --tracking-uri / MLFLOW_TRACKING_URI (a running `mlflow server`, or a "
                        f"writable sqlite:///path/mlflow.db)") from exc


def _store_error(exc: Exception) -> str:
    """The cause in a few words (MLflow wraps urllib3's long retry message)."""
    text = str(exc).strip()
    for needle, reason in (("Connection refused", "connection refused (no server answering there)"),
                           ("NewConnectionError", "no server answering there"),
                           ("Name or service not known", "unknown host"), ("timed out", "timed out")):
        if needle in text:
            return reason
    first = text.splitlines()[0] if text else type(exc).__name__
    return first[:300]


def package_versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "absent"
    return out


def git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if res.returncode != 0:
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                           capture_output=True, text=True, timeout=5).stdout.strip()
    return res.stdout.strip() + ("-dirty" if dirty else "")


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= MAX_PARAM_LEN else text[: MAX_PARAM_LEN - 3] + "..."


def log_params(params: dict[str, Any]) -> None:
    import mlflow

    items = {re.sub(r"[^\w\-. :/]", "_", k): _param_value(v) for k, v in params.items()}
    keys = sorted(items)
    for i in range(0, len(keys), 90):  # MLflow takes at most 100 params per batch
        mlflow.log_params({k: items[k] for k in keys[i:i + 90]})


def log_metrics(metrics: dict[str, float]) -> None:
    import math

    import mlflow

    clean = {k: float(v) for k, v in metrics.items() if v is not None and not math.isnan(float(v))}
    if clean:
        mlflow.log_metrics(clean)


def log_json_artifact(obj: Any, name: str, artifact_path: str | None = None) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(json.dumps(obj, indent=2, sort_keys=True, default=str))
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


def log_text_artifact(text: str, name: str, artifact_path: str | None = None) -> None:
    import mlflow

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / name
        path.write_text(text)
        mlflow.log_artifact(str(path), artifact_path=artifact_path)


@contextmanager
def run(name: str, tags: dict[str, str], nested: bool = False) -> Iterator[Any]:
    """An MLflow run that ends FAILED with the traceback as an artifact when the body raises."""
    import mlflow

    active = mlflow.start_run(run_name=name, tags=tags, nested=nested)
    try:
        yield active
    except BaseException as exc:
        try:
            log_text_artifact(traceback.format_exc(), "traceback.txt")
            mlflow.set_tag("zsasbench.error", f"{type(exc).__name__}: {exc}"[:5000])
        finally:
            mlflow.end_run(status="KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
        raise
    else:
        mlflow.end_run(status="FINISHED")
