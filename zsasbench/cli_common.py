"""Pieces every command module shares: the one-line error handling and the common options."""
from __future__ import annotations

import functools
import json
from pathlib import Path

import typer

from .errors import UserError


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def user_errors(func):
    """Turn UserError (bad input) into one clear line and exit status 2, without a traceback."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            fail(str(exc))

    return wrapper


def echo_json(obj) -> None:
    typer.echo(json.dumps(obj, indent=2, default=str))


# --- shared options -----------------------------------------------------------------------------
MethodOpt = typer.Option(None, "--method", "-m", help="Method name (repeatable). Default: random, local-contrast.")
DatasetOpt = typer.Option(None, "--dataset", "-d", help="NAME or NAME=PATH (repeatable). Default: synthetic.")
CategoryOpt = typer.Option(None, "--category", "-c", help="Only these categories (repeatable).")
DataRootOpt = typer.Option(None, "--data-root", help="Folder holding the datasets (default data/, or ZSAS_DATA_ROOT).")
TrackingOpt = typer.Option(None, "--tracking-uri", help="MLflow store (default sqlite:///runs/mlflow.db; MLFLOW_TRACKING_URI).")
DeviceOpt = typer.Option("auto", "--device", help="auto, cpu or cuda.")
SeedOpt = typer.Option(111, "--seed", help="Seed for every random choice.")
EvalSizeOpt = typer.Option("400", "--eval-size", help="Evaluation size in pixels, or 'native'.")
LimitOpt = typer.Option(None, "--limit", help="At most N test images per category (evenly spaced).")
ModelsOpt = typer.Option("default", "--models", help="Weights profile: default (real weights) or tiny-random.")
RunsDirOpt = typer.Option(Path("runs"), "--runs-dir", help="Output folder (cache, MLflow db, artifacts).")
ExperimentOpt = typer.Option("zsasbench", "--experiment", help="MLflow experiment name.")
ObjectNameOpt = typer.Option(None, "--object-name", help="What the images show (folder dataset / predict).")
KindOpt = typer.Option(None, "--kind", help="object or texture (folder dataset).")
