"""Build the Table-1 layout (rows: dataset x metric; columns: methods) from finished MLflow runs."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from .. import tracking

METRICS = (("pixel_ap", "AP"), ("pixel_f1_max", "F1-max"))
DATASET_ORDER = ("mvtec", "mpdd", "btad", "ksdd", "mtd", "dtd-synthetic", "dagm", "synthetic", "folder")
DATASET_LABELS = {"mvtec": "MVTec AD", "mpdd": "MPDD", "btad": "BTAD", "ksdd": "KSDD", "mtd": "MTD",
                  "dtd-synthetic": "DTD-Synthetic", "dagm": "DAGM", "synthetic": "Synthetic", "folder": "Folder"}
METHOD_ORDER = ("random", "local-contrast", "clipseg", "winclip", "sdp", "saa-plus", "evf-sam", "iap-as")


@dataclass
class Leaderboard:
    """values[(row_label, metric_label)][method_display] = value in [0, 1] (NaN when absent)."""

    methods: list[str]  # column labels (display names)
    rows: list[tuple[str, str]]  # (dataset or dataset/category label, metric label)
    values: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)
    run_ids: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, dataset) -> parent run
    protocol: str = ""
    notes: list[str] = field(default_factory=list)  # footnotes (custom configs, partial or smoke-test runs)

    def ranks(self, row: tuple[str, str]) -> dict[str, int]:
        """1 for the best value of a row, 2 for the second (ties share a rank), higher is better."""
        vals = {m: v for m, v in self.values.get(row, {}).items() if not math.isnan(v)}
        shown = {m: round(100 * v, 1) for m, v in vals.items()}  # rank what the table shows: equal cells tie
        distinct = sorted(set(shown.values()), reverse=True)
        return {m: distinct.index(v) + 1 for m, v in shown.items()}


def _order(key: str, order: tuple[str, ...]) -> tuple[int, str]:
    return (order.index(key), key) if key in order else (len(order), key)


def latest_parent_runs(tracking_uri: str, experiment: str = tracking.DEFAULT_EXPERIMENT,
                       protocol: str | None = None, include_random_weights: bool = False,
                       include_partial: bool = False):
    """Latest FINISHED parent run per (method, dataset, protocol), without ablation variants and,
    unless asked, without partial runs (--limit or a --category subset) and random-weight runs."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    query = f"tags.`{tracking.LEVEL_TAG}` = 'parent' and attributes.status = 'FINISHED'"
    runs = []
    token = None
    while True:
        page = client.search_runs([exp.experiment_id], filter_string=query, max_results=1000,
                                  order_by=["attributes.start_time DESC"], page_token=token)
        runs.extend(page)
        token = page.token
        if not token:
            break
    chosen: dict[tuple[str, str, str], object] = {}
    for run in runs:
        tags = run.data.tags
        if "variant" in tags:
            continue
        if not include_random_weights and tags.get("weights") != "real":
            continue
        if not include_partial and tags.get("complete") == "false":
            continue
        if protocol is not None and tags.get("protocol") != protocol:
            continue
        key = (tags.get("method", "?"), tags.get("dataset", "?"), tags.get("protocol", "?"))
        chosen.setdefault(key, run)  # runs come newest first
    return list(chosen.values())


def build_leaderboard(tracking_uri: str, experiment: str = tracking.DEFAULT_EXPERIMENT,
                      protocol: str | None = None, per_category: bool = False,
                      include_random_weights: bool = False, include_partial: bool = False) -> Leaderboard:
    from mlflow.tracking import MlflowClient

    runs = latest_parent_runs(tracking_uri, experiment, protocol, include_random_weights, include_partial)
    if protocol is None and runs:
        # One protocol per table: the most recent run's, unless asked otherwise.
        protocol = runs[0].data.tags.get("protocol")
        runs = [r for r in runs if r.data.tags.get("protocol") == protocol]
    runs.sort(key=lambda r: (_order(r.data.tags["method"], METHOD_ORDER), _order(r.data.tags["dataset"], DATASET_ORDER)))
    display = {r.data.tags["method"]: r.data.tags.get("method.display", r.data.tags["method"]) for r in runs}
    marks = {m: "" for m in display}
    for r in runs:
        tags = r.data.tags
        if tags.get("config") == "custom":
            marks[tags["method"]] += "*"
        if tags.get("weights") == "random":
            marks[tags["method"]] += "†"
        if tags.get("complete") == "false":
            marks[tags["method"]] += "‡"
    display = {m: d + "".join(sorted(set(marks[m]))) for m, d in display.items()}
    methods = [display[m] for m in sorted(display, key=lambda m: _order(m, METHOD_ORDER))]
    board = Leaderboard(methods=methods, rows=[], protocol=protocol or "", notes=_notes(marks.values()))
    client = MlflowClient(tracking_uri) if per_category else None
    row_sources: dict[str, dict[str, dict[str, float]]] = {}  # row label -> method -> metrics
    for run in runs:
        tags = run.data.tags
        method, dataset = tags["method"], tags["dataset"]
        board.run_ids[(method, dataset)] = run.info.run_id
        label = DATASET_LABELS.get(dataset, dataset)
        if per_category:
            children = client.search_runs([run.info.experiment_id],
                                          filter_string=f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
            for child in children:
                cat_label = f"{label} / {child.data.tags.get('category', '?')}"
                row_sources.setdefault(cat_label, {})[display[method]] = child.data.metrics
        else:
            row_sources.setdefault(label, {})[display[method]] = run.data.metrics
    for row_label in sorted(row_sources, key=lambda r: _row_key(r)):
        for metric, metric_label in METRICS:
            row = (row_label, metric_label)
            board.rows.append(row)
            board.values[row] = {m: float(row_sources[row_label].get(m, {}).get(metric, math.nan)) for m in methods}
    return board


MARK_NOTES = {"*": "* non-default method config (see the run's params)",
              "†": "† random weights (tiny-random smoke test)",
              "‡": "‡ partial run (--limit or a --category subset)"}


def _notes(marks) -> list[str]:
    used = set("".join(marks))
    return [note for mark, note in MARK_NOTES.items() if mark in used]


def board_from_summary(summary, methods: list[tuple[str, str]], protocol: str, notes: list[str]) -> Leaderboard:
    """The Table-1 layout of one run's own results (for partial or smoke-test runs).

    methods: (name, display name) in column order."""
    datasets = sorted({d for (_, d) in summary.dataset_means}, key=lambda d: _order(d, DATASET_ORDER))
    board = Leaderboard(methods=[disp for _, disp in methods], rows=[], protocol=protocol, notes=notes)
    for dataset in datasets:
        label = DATASET_LABELS.get(dataset, dataset)
        for metric, metric_label in METRICS:
            row = (label, metric_label)
            board.rows.append(row)
            board.values[row] = {disp: float(summary.dataset_means.get((name, dataset), {}).get(metric, math.nan))
                                 for name, disp in methods}
    return board


def _row_key(label: str) -> tuple:
    base, _, cat = label.partition(" / ")
    inverse = {v: k for k, v in DATASET_LABELS.items()}
    return (*_order(inverse.get(base, base), DATASET_ORDER), cat)
