"""`zsasbench predict`: one method on your own unlabelled images (registered by cli.py). Parses options and calls `zsasbench.predict`, nothing else."""
from __future__ import annotations

import time
from pathlib import Path
from typing import List, Optional

import typer

from .cli_common import DeviceOpt, ModelsOpt, SeedOpt, TrackingOpt, user_errors
from .errors import UserError

DEFAULT_PREDICT_DIR = Path("runs") / "predict"


def default_output(method: str, root: Path = DEFAULT_PREDICT_DIR) -> Path:
    """runs/predict/<method>-<UTC timestamp>, with -2, -3... when that folder already exists."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    out, n = root / f"{method}-{stamp}", 1
    while out.exists():
        n += 1
        out = root / f"{method}-{stamp}-{n}"
    return out


@user_errors
def predict(
    inputs: List[Path] = typer.Argument(..., metavar="DIR_OR_FILES", help="Image files and/or folders (searched recursively), or a "
                                                  "folder-dataset tree PATH (its test/ images)."),
    method: str = typer.Option(..., "--method", "-m", help="The method to run (see `zsasbench methods`)."),
    object_name: Optional[str] = typer.Option(None, "--object-name", help="What the images show, for "
                                              "prompt-based methods (default: the input folder's name)."),
    kind: str = typer.Option("object", "--kind", help="object or texture."),
    reference: Optional[List[Path]] = typer.Option(None, "--reference", help="Folder or files of normal "
                                                   "reference images (repeatable; default: PATH/train/good "
                                                   "of a folder-dataset tree, else none)."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Output folder "
                                          "(default runs/predict/<method>-<timestamp>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty --output folder (replaces "
                                   "only the files predict writes)."),
    models: str = ModelsOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Method config override key=value (repeatable)."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per predict() call."),
    track: bool = typer.Option(False, "--track", help="Also log the run and its outputs to MLflow."),
    tracking_uri: Optional[str] = TrackingOpt,
    experiment: str = typer.Option("zsasbench-predict", "--experiment", help="MLflow experiment (with --track)."),
):
    """Run one method on unlabelled images: anomaly maps (16-bit PNG + .npy), overlays, scores.csv and
    an index.html of the overlays, most anomalous first."""
    from .methods import create_method
    from .models.base import Runtime, resolve_device
    from .predict import log_prediction, predict_images
    from .progress import rich_reporter
    from .runner import split_overrides

    if kind not in ("object", "texture"):
        raise UserError(f"--kind {kind!r}: expected object or texture")
    resolve_device(device)
    overrides = split_overrides([method], set_ or [])  # also rejects an unknown method, listing valid ones
    runtime = Runtime(device=device, profile=models)
    m = create_method(method, overrides.get(method), runtime)
    out = output or default_output(method)
    if track:
        from .tracking import connect, resolve_tracking_uri

        connect(resolve_tracking_uri(tracking_uri), experiment)  # fail fast, before any compute
    with rich_reporter() as reporter:
        report = predict_images(m, inputs, out, object_name=object_name, kind=kind, references=reference,
                                reporter=reporter, seed=seed, batch_size=batch_size, overwrite=overwrite)
    if track:
        run_id = log_prediction(report, m, inputs)
        typer.echo(f"logged to MLflow run {run_id}", err=True)
    top = report.ranked()[:5]
    typer.echo(f"{len(report.images)} image(s), object {report.object_name!r}, "
               f"{report.n_references} reference(s), {report.seconds / max(1, len(report.images)):.3f} s/image")
    typer.echo("most anomalous:")
    for p in top:
        typer.echo(f"  {p.score:.6g}  {p.file}")
    typer.echo(f"scores: {report.csv}")
    typer.echo(f"browse: {report.html}")
