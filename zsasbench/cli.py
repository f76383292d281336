"""The `zsasbench` command line: typer commands that parse options and call the library, nothing else."""
from __future__ import annotations

import math
from pathlib import Path
from typing import List, Optional

import typer

from .cli_common import (CategoryOpt, DataRootOpt, DatasetOpt, DeviceOpt, EvalSizeOpt, ExperimentOpt, KindOpt,
                         LimitOpt, MethodOpt, ModelsOpt, ObjectNameOpt, RunsDirOpt, SeedOpt, TrackingOpt, echo_json,
                         fail, user_errors)
from .cli_predict import predict as _predict
from .errors import UserError

app = typer.Typer(add_completion=False, no_args_is_help=False, pretty_exceptions_enable=False,
                  help="Benchmark harness for zero-shot anomaly segmentation.")
datasets_app = typer.Typer(add_completion=False, help="List datasets, or validate dataset folders (`check`).")
app.add_typer(datasets_app, name="datasets")

DEFAULT_METHODS = ["random", "local-contrast"]
DEFAULT_DATASETS = ["synthetic"]


def _run_options(method, dataset, category, data_root, tracking_uri, device, seed, eval_size, limit, models,
                 sets, runs_dir, experiment, object_name, kind, exact=False, batch_size=4, suffix=""):
    from .models.base import Runtime, resolve_device
    from .protocol import Protocol
    from .runner import RunOptions, resolve_dataset, split_overrides

    methods = list(method or DEFAULT_METHODS)
    from .methods import method_class

    for m in methods:
        method_class(m)  # unknown names fail here, listing valid ones
    if limit is not None and limit <= 0:
        raise UserError(f"--limit {limit}: expected a positive number of images per category")
    if batch_size <= 0:
        raise UserError(f"--batch-size {batch_size}: expected a positive number")
    if kind is not None and kind not in ("object", "texture"):
        raise UserError(f"--kind {kind!r}: expected object or texture")
    refs = [resolve_dataset(d, data_root, runs_dir, object_name, kind) for d in (dataset or DEFAULT_DATASETS)]
    resolve_device(device)
    return RunOptions(methods=methods, datasets=refs, categories=list(category or []),
                      overrides=split_overrides(methods, sets or []),
                      runtime=Runtime(device=device, profile=models), seed=seed,
                      protocol=Protocol.parse(eval_size), limit=limit, runs_dir=runs_dir,
                      tracking_uri=tracking_uri, experiment=experiment, exact_metrics=exact,
                      batch_size=batch_size, run_name_suffix=suffix)


def _console(stderr: bool = False):
    """A rich console that does not cut names to 80 columns when the output is a file or a CI log."""
    import sys

    from rich.console import Console

    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, width=None if stream.isatty() else 200)


def _print_summary(summary) -> None:
    from rich.table import Table

    table = Table(title="run summary")
    for col in ("method", "dataset", "category", "status", "images", "pixel AP", "F1-max", "image AUROC", "s/img"):
        table.add_column(col)

    def pct(value: float) -> str:
        return "-" if math.isnan(value) else f"{100 * value:.1f}"

    for o in summary.outcomes:
        status = o.status if o.status != "failed" else f"[red]failed[/red]: {o.error}"
        table.add_row(o.method, o.dataset, o.category, status, str(o.n_images),
                      *(pct(o.metrics.get(k, math.nan)) for k in ("pixel_ap", "pixel_f1_max", "image_auroc")),
                      "-" if o.seconds_per_image is None else f"{o.seconds_per_image:.3f}")
    _console(stderr=True).print(table)


@app.command()
@user_errors
def run(
    method: Optional[List[str]] = MethodOpt,
    dataset: Optional[List[str]] = DatasetOpt,
    category: Optional[List[str]] = CategoryOpt,
    data_root: Optional[Path] = DataRootOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    eval_size: str = EvalSizeOpt,
    limit: Optional[int] = LimitOpt,
    models: str = ModelsOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Method config override key=value or method.key=value (repeatable)."),
    runs_dir: Path = RunsDirOpt,
    experiment: str = ExperimentOpt,
    object_name: Optional[str] = ObjectNameOpt,
    kind: Optional[str] = KindOpt,
    exact: bool = typer.Option(False, "--exact", help="Exact (scikit-learn-equal) metrics instead of streaming."),
    batch_size: int = typer.Option(4, "--batch-size", help="Images per predict() call."),
    show_leaderboard: bool = typer.Option(True, "--leaderboard/--no-leaderboard", help="Print the leaderboard after the run."),
):
    """Run methods on datasets, cache the maps, score them and log everything to MLflow."""
    from .leaderboard import render
    from .progress import rich_reporter
    from .runner import Runner

    opts = _run_options(method, dataset, category, data_root, tracking_uri, device, seed, eval_size, limit,
                        models, set_, runs_dir, experiment, object_name, kind, exact, batch_size)
    runner = Runner(opts)
    validated = runner.validate()  # bad input fails here, before any progress bar or compute
    with rich_reporter() as reporter:
        runner.reporter = reporter
        summary = runner.run(validated)
    _print_summary(summary)
    if show_leaderboard:
        typer.echo(render(_after_run_board(opts, summary, tracking_uri, runs_dir, experiment), "md"))
    if not summary.ok:
        typer.echo(f"{len(summary.failures)} categor{'y' if len(summary.failures) == 1 else 'ies'} failed "
                   f"(see the summary above and the traceback artifacts in MLflow)", err=True)
        raise typer.Exit(1)


def _after_run_board(opts, summary, tracking_uri, runs_dir, experiment):
    """A complete real-weights run: the leaderboard. Otherwise: this run's own results, marked."""
    from .leaderboard.table import MARK_NOTES, board_from_summary, build_leaderboard
    from .methods import method_class
    from .tracking import resolve_tracking_uri

    partial = opts.limit is not None or bool(opts.categories)
    if not partial and opts.runtime.weights_are_real:
        return build_leaderboard(resolve_tracking_uri(tracking_uri, runs_dir), experiment,
                                 protocol=opts.protocol.label)
    mark = ("\u2020" if not opts.runtime.weights_are_real else "") + ("\u2021" if partial else "")
    methods = [(m, (method_class(m).display_name or m) + mark) for m in opts.methods]
    notes = [MARK_NOTES[c] for c in mark] + ["This run only; `zsasbench leaderboard` shows complete real-weight runs."]
    return board_from_summary(summary, methods, opts.protocol.label, notes)


@app.command()
@user_errors
def leaderboard(
    format: str = typer.Option("md", "--format", "-f", help="md, csv, latex or html."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write to this file instead of stdout."),
    per_category: bool = typer.Option(False, "--per-category", help="One row per dataset category."),
    tracking_uri: Optional[str] = TrackingOpt,
    runs_dir: Path = RunsDirOpt,
    experiment: str = ExperimentOpt,
    eval_size: Optional[str] = typer.Option(None, "--eval-size", help="Protocol to show (default: the latest run's)."),
    include_random_weights: bool = typer.Option(False, "--include-random-weights", help="Also show tiny-random smoke runs."),
    include_partial: bool = typer.Option(False, "--include-partial", help="Also show runs with --limit or a --category subset."),
):
    """Print the Table-1 leaderboard (latest finished run per method, dataset and protocol)."""
    from .leaderboard import build_leaderboard, render
    from .protocol import Protocol
    from .tracking import connect, resolve_tracking_uri

    uri = resolve_tracking_uri(tracking_uri, runs_dir)
    connect(uri, experiment)
    protocol = Protocol.parse(eval_size).label if eval_size else None
    board = build_leaderboard(uri, experiment, protocol, per_category, include_random_weights, include_partial)
    if not board.rows:
        what = f"for protocol {protocol} " if protocol else ""
        fail(f"no complete finished runs {what}in experiment {experiment!r} at {uri}; run `zsasbench run` first "
             f"(--include-partial and --include-random-weights also show smoke tests)", code=1)
    text = render(board, format)
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text)
        typer.echo(f"wrote {output}", err=True)
    else:
        typer.echo(text)


@app.command()
@user_errors
def methods(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """List registered methods, the weights each needs, and whether they are present here."""
    from .methods import method_names
    from .methods.listing import method_rows

    rows = method_rows(method_names())
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title="methods")
    for col in ("name", "source", "description", "weights", "ready"):
        table.add_column(col)
    for r in rows:
        weights = "\n".join(f"{m['spec']} ({'present' if m['present'] else 'missing'})" for m in r["models"]) or "none"
        table.add_row(r["name"], r["source"], r.get("description", "") or r.get("error", ""), weights,
                      "yes" if r["ready"] else "no")
    _console().print(table)


@datasets_app.callback(invoke_without_command=True)
@user_errors
def datasets(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
             data_root: Optional[Path] = DataRootOpt):
    """List the datasets, their kind and whether they are found under the data root."""
    if ctx.invoked_subcommand is not None:
        return
    from .datasets import DATASETS, candidate_roots, dataset_class
    from .runner import DEFAULT_DATA_ROOT

    import os

    root = Path(data_root or os.environ.get("ZSAS_DATA_ROOT") or DEFAULT_DATA_ROOT)
    rows = []
    for name in DATASETS:
        cls = dataset_class(name)
        found = next((str(p) for p in candidate_roots(name, root) if p.is_dir()), None)
        rows.append({"name": name, "kind": cls.kind, "description": cls.description, "found": found,
                     "looked_in": [str(p) for p in candidate_roots(name, root)], "source": cls.source,
                     "layout": cls.layout})
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title=f"datasets (data root: {root})")
    for col in ("name", "kind", "found at", "description"):
        table.add_column(col)
    for r in rows:
        found = r["found"] or ("built in" if r["name"] == "synthetic" else
                               "needs --dataset folder=PATH" if r["name"] == "folder" else "[yellow]not found[/yellow]")
        table.add_row(r["name"], r["kind"], found, r["description"])
    _console().print(table)


@datasets_app.command("check")
@user_errors
def datasets_check(
    dataset: Optional[List[str]] = typer.Argument(None, help="NAME or NAME=PATH; default: every dataset found."),
    data_root: Optional[Path] = DataRootOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Validate dataset folders: counts per category and every problem found (decodes every file)."""
    from .datasets import DATASETS, candidate_roots
    from .datasets.check import check_dataset, render_report
    from .runner import DEFAULT_DATA_ROOT, resolve_dataset

    import os

    root = Path(data_root or os.environ.get("ZSAS_DATA_ROOT") or DEFAULT_DATA_ROOT)
    if dataset:
        refs = [resolve_dataset(d, root) for d in dataset]
    else:
        refs = []
        for name in DATASETS:
            if name in ("synthetic", "folder"):
                continue
            found = next((p for p in candidate_roots(name, root) if p.is_dir()), None)
            if found is not None:
                refs.append(resolve_dataset(f"{name}={found}"))
        if not refs:
            fail(f"no dataset found under {root}; give NAME=PATH or --data-root DIR", code=1)
    reports = [check_dataset(ref.name, ref.root) for ref in refs]
    if as_json:
        echo_json([r.to_dict() for r in reports])
    else:
        for r in reports:
            typer.echo(render_report(r))
    if any(r.problems for r in reports):
        raise typer.Exit(1)


@app.command()
@user_errors
def models(as_json: bool = typer.Option(False, "--json", help="Machine-readable output.")):
    """Every model the registered methods need: where it loads from, whether it is here, its size."""
    from .methods import method_names
    from .methods.listing import required_specs
    from .models.listing import model_rows

    rows = model_rows(required_specs(method_names()))
    if as_json:
        echo_json(rows)
        return
    from rich.table import Table

    table = Table(title="models")
    for col in ("model", "role", "location", "present", "size"):
        table.add_column(col, overflow="fold")
    table.add_column("how to get", overflow="fold", min_width=40)
    for r in rows:
        size = r.get("size_bytes")
        table.add_row(str(r.get("spec")), str(r.get("role", "")), str(r.get("location", "")),
                      "yes" if r.get("present") else "no",
                      "-" if not size else f"{size / 1e6:.0f} MB", str(r.get("how_to_get", "") if not r.get("present") else ""))
    _console().print(table)


def _table_md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


@app.command()
@user_errors
def ablation(
    method_name: str = typer.Argument("iap-as", metavar="METHOD", help="The method to ablate (iap-as)."),
    dataset: List[str] = typer.Option(..., "--dataset", "-d", help="NAME or NAME=PATH (repeatable)."),
    category: Optional[List[str]] = CategoryOpt,
    data_root: Optional[Path] = DataRootOpt,
    tracking_uri: Optional[str] = TrackingOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    eval_size: str = EvalSizeOpt,
    limit: Optional[int] = LimitOpt,
    models: str = ModelsOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override key=value (repeatable)."),
    runs_dir: Path = RunsDirOpt,
    experiment: str = ExperimentOpt,
):
    """Run the paper's Table 3 variants (tagging / LLM / filter on and off); each is its own MLflow run."""
    from .methods.iap_as import ABLATION_VARIANTS
    from .progress import rich_reporter
    from .runner import Runner

    if method_name != "iap-as":
        raise UserError(f"ablation is defined for iap-as, not {method_name!r}")
    user_sets = [s for s in (set_ or []) if s.split("=", 1)[0].split(".")[-1] not in ("use_tagging", "use_llm", "use_filter")]
    rows, failed = [], 0
    for variant, tagging, llm, filt in ABLATION_VARIANTS:
        sets = [*user_sets, f"use_tagging={tagging}", f"use_llm={llm}", f"use_filter={filt}"]
        opts = _run_options([method_name], dataset, category, data_root, tracking_uri, device, seed, eval_size,
                            limit, models, sets, runs_dir, experiment, None, None, suffix=variant)
        runner = Runner(opts)
        validated = runner.validate()
        with rich_reporter() as reporter:
            runner.reporter = reporter
            summary = runner.run(validated)
        failed += len(summary.failures)
        for ref in opts.datasets:
            means = summary.dataset_means.get((method_name, ref.name), {})
            cells = ["-" if math.isnan(means.get(k, math.nan)) else f"{100 * means[k]:.1f}"
                     for k in ("pixel_ap", "pixel_f1_max")]
            rows.append([ref.name, variant, *("yes" if x else "no" for x in (tagging, llm, filt)), *cells])
    typer.echo(_table_md(["Dataset", "Variant", "Tagging", "LLM", "Filter", "AP", "F1-max"], rows))
    if failed:
        raise typer.Exit(1)


@app.command()
@user_errors
def prompts(
    method_name: str = typer.Argument("iap-as", metavar="METHOD", help="The method whose prompts to show (iap-as)."),
    dataset: List[str] = typer.Option(..., "--dataset", "-d", help="NAME or NAME=PATH (repeatable)."),
    category: Optional[List[str]] = CategoryOpt,
    data_root: Optional[Path] = DataRootOpt,
    device: str = DeviceOpt,
    seed: int = SeedOpt,
    models: str = ModelsOpt,
    set_: Optional[List[str]] = typer.Option(None, "--set", help="Config override key=value (repeatable)."),
    runs_dir: Path = RunsDirOpt,
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
):
    """Table 2: per category, the object tag set and the final prompts (runs Stage 1 where needed)."""
    from .models.base import check_present
    from .runner import Runner

    if method_name != "iap-as":
        raise UserError(f"prompts are produced by iap-as, not {method_name!r}")
    opts = _run_options([method_name], dataset, category, data_root, None, device, seed, "400", None, models,
                        set_, runs_dir, "zsasbench", None, None)
    runner = Runner(opts)
    (method,) = runner.build_methods()
    stage1_specs = [s for s in method.required_models() if s.family != "sam"]
    check_present(stage1_specs, opts.runtime)
    out = []
    for ref, ds, categories in runner.open_datasets():
        for cat in categories:
            cache = runner.category_cache(method, ref, cat)
            typer.echo(f"{ref.name} / {cat}: Stage 1 (tagging, grounding, LLM; reused when saved)...", err=True)
            method.prepare(runner.prepare_context(ref, ds, cat, cache))
            s1 = method.stage1
            out.append({"dataset": ref.name, "category": cat, "object_tags": s1.object_tags,
                        "object_tag_source": s1.object_tag_source, "final_prompt": s1.final_prompt,
                        "llm_answer": s1.llm_answer, "llm_fallback": s1.llm_fallback})
    if as_json:
        echo_json(out)
        return
    typer.echo(_table_md(["Dataset", "Category", "Object tag set", "Final prompts"],
                         [[o["dataset"], o["category"], ", ".join(o["object_tags"]), o["final_prompt"]] for o in out]))


app.command("predict")(_predict)

