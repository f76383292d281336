"""The benchmark loop: method x dataset x category, with a map cache, resume and fault isolation.

Data flows one way: dataset -> method -> cached map -> protocol -> metrics -> MLflow.
Everything that can be checked is checked before any compute (names, folders, weights, the store).
"""
from __future__ import annotations

import math
import os
import time
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import tracking
from .cache import CategoryCache, category_cache
from .datasets import DATASETS, Dataset, candidate_roots, dataset_class, load_dataset
from .errors import UserError
from .methods import method_class
from .methods.base import Method, PrepareContext, config_from_overrides
from .models.base import Runtime, check_present
from .progress import Reporter, SilentReporter
from .protocol import Protocol, check_map, minmax, resize_map, resize_mask

DEFAULT_DATA_ROOT = "data"
HEADLINE_METRICS = ("pixel_ap", "pixel_f1_max")


@dataclass(frozen=True)
class DatasetRef:
    """A dataset name with the folder it is read from (and options for the folder dataset)."""

    name: str
    root: Path
    object_name: str | None = None
    kind: str | None = None

    def open(self) -> Dataset:
        if self.name == "folder":
            from .datasets.folder import FolderDataset

            return FolderDataset(self.root, object_name=self.object_name, kind=self.kind or "object")
        return load_dataset(self.name, self.root)


def resolve_dataset(arg: str, data_root: str | Path | None = None, runs_dir: Path = tracking.DEFAULT_RUNS_DIR,
                    object_name: str | None = None, kind: str | None = None) -> DatasetRef:
    """`NAME` (looked for under the data root) or `NAME=PATH`; checks the folder exists."""
    name, _, path = arg.partition("=")
    name = name.strip()
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}; valid: {', '.join(DATASETS)}")
    if name == "synthetic" and not path:
        return DatasetRef(name, Path(runs_dir) / "data" / "synthetic")
    if path:
        root = Path(path).expanduser()
        if not root.is_dir():
            cls = dataset_class(name)
            raise UserError(f"dataset {name!r}: folder {root} does not exist. Expected layout: {cls.layout}")
        return DatasetRef(name, root, object_name, kind)
    if name == "folder":
        raise UserError("dataset 'folder' needs a path: --dataset folder=PATH")
    data_root = Path(data_root or os.environ.get("ZSAS_DATA_ROOT") or DEFAULT_DATA_ROOT)
    candidates = candidate_roots(name, data_root)
    for root in candidates:
        if root.is_dir():
            return DatasetRef(name, root, object_name, kind)
    cls = dataset_class(name)
    raise UserError(f"dataset {name!r} not found: looked in {', '.join(str(c) for c in candidates)}. "
                    f"Give its folder as {name}=PATH (with --dataset on run) or use --data-root DIR. "
                    f"Expected layout: {cls.layout}")


def split_overrides(methods: Sequence[str], sets: Sequence[str]) -> dict[str, dict[str, str]]:
    """`--set key=value` applies to every method whose config has `key`; `--set method.key=value` to one."""
    per_method: dict[str, dict[str, str]] = {m: {} for m in methods}
    for item in sets:
        if "=" not in item:
            raise UserError(f"--set {item!r}: expected key=value (or method.key=value)")
        key, value = item.split("=", 1)
        key = key.strip()
        target, _, field_name = key.rpartition(".")
        if target:
            if target not in per_method:
                raise UserError(f"--set {item!r}: method {target!r} is not among --method {', '.join(methods)}")
            per_method[target][field_name] = value
            continue
        matched = [m for m in methods if key in _config_fields(m)]
        if not matched:
            valid = "; ".join(f"{m}: {', '.join(sorted(_config_fields(m)))}" for m in methods)
            raise UserError(f"--set {item!r}: no selected method has a config field {key!r} (fields: {valid})")
        for m in matched:
            per_method[m][key] = value
    return per_method


def _config_fields(method: str) -> set[str]:
    import dataclasses

    return {f.name for f in dataclasses.fields(method_class(method).Config)}


@dataclass
class RunOptions:
    methods: list[str]
    datasets: list[DatasetRef]
    categories: list[str] = field(default_factory=list)
    overrides: dict[str, dict[str, str]] = field(default_factory=dict)
    runtime: Runtime = field(default_factory=Runtime)
    seed: int = 111
    protocol: Protocol = field(default_factory=Protocol)
    limit: int | None = None
    runs_dir: Path = tracking.DEFAULT_RUNS_DIR
    tracking_uri: str | None = None
    experiment: str = tracking.DEFAULT_EXPERIMENT
    exact_metrics: bool = False
    batch_size: int = 4
    grid_images: int = 4
    run_name_suffix: str = ""  # e.g. the ablation variant


@dataclass
class CategoryOutcome:
    method: str
    dataset: str
    category: str
    status: str  # "ok", "reused" or "failed"
    metrics: dict[str, float] = field(default_factory=dict)
    error: str | None = None
    n_images: int = 0
    n_predicted: int = 0
    seconds_per_image: float | None = None


@dataclass
class RunSummary:
    outcomes: list[CategoryOutcome] = field(default_factory=list)
    parent_run_ids: dict[tuple[str, str], str] = field(default_factory=dict)
    dataset_means: dict[tuple[str, str], dict[str, float]] = field(default_factory=dict)

    @property
    def failures(self) -> list[CategoryOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    @property
    def ok(self) -> bool:
        return not self.failures


def select_samples(samples: list, limit: int | None) -> list:
    """At most `limit` samples, evenly spaced over the sorted list (so normal and defective both appear)."""
    if limit is None or limit >= len(samples):
        return samples
    if limit <= 0:
        raise UserError(f"--limit {limit}: expected a positive number")
    idx = np.unique(np.linspace(0, len(samples) - 1, limit).round().astype(int))
    return [samples[i] for i in idx]


def method_cache_key(method: Method, runtime: Runtime, seed: int) -> str:
    return f"{method.config_hash_source()}|profile={runtime.profile}|dtype={runtime.dtype}|seed={seed}"


class Runner:
    def __init__(self, options: RunOptions, reporter: Reporter | None = None):
        self.options = options
        self.reporter = reporter or SilentReporter()
        self.cache_root = Path(options.runs_dir) / "cache"

    # --- validation before compute ---------------------------------------------------------
    def build_methods(self) -> list[Method]:
        methods = []
        for name in self.options.methods:
            cls = method_class(name)
            config = config_from_overrides(cls.Config, self.options.overrides.get(name))
            methods.append(cls(config, runtime=self.options.runtime))
        return methods

    def open_datasets(self) -> list[tuple[DatasetRef, Dataset, list[str]]]:
        opened = []
        for ref in self.options.datasets:
            ds = ref.open()
            cats = ds.categories
            chosen = cats
            if self.options.categories:
                unknown = [c for c in self.options.categories if c not in cats]
                chosen = [c for c in self.options.categories if c in cats]
                if not chosen:
                    raise UserError(f"dataset {ref.name!r}: none of --category {', '.join(unknown)} exists; "
                                    f"valid: {', '.join(cats)}")
            for cat in chosen:
                unlabelled = [s.id for s in ds.test_samples(cat) if s.label not in (0, 1)]
                if unlabelled:
                    raise UserError(f"dataset {ref.name!r}, category {cat!r}: {len(unlabelled)} test images have "
                                    f"no label (e.g. {unlabelled[0]}); scoring needs test/good and test/<defect> "
                                    f"folders. Use `zsasbench predict` for unlabelled images")
            opened.append((ref, ds, chosen))
        return opened

    def validate(self) -> tuple[list[Method], list[tuple[DatasetRef, Dataset, list[str]]], str]:
        methods = self.build_methods()
        specs = []
        for m in methods:
            specs.extend(s for s in m.required_models() if s not in specs)
        check_present(specs, self.options.runtime)  # every missing model of every method, in one message
        datasets = self.open_datasets()
        uri = tracking.resolve_tracking_uri(self.options.tracking_uri, self.options.runs_dir)
        experiment_id = tracking.connect(uri, self.options.experiment)
        return methods, datasets, experiment_id

    # --- the loop ----------------------------------------------------------------------------
    def run(self, validated=None) -> RunSummary:
        """Run everything; `validated` is the result of an earlier `validate()` (checks run once)."""
        methods, datasets, _ = validated or self.validate()
        summary = RunSummary()
        for method in methods:
            for ref, ds, categories in datasets:
                self._run_method_dataset(method, ref, ds, categories, summary)
        return summary

    def _base_params(self, method: Method, ref: DatasetRef) -> dict[str, Any]:
        opts = self.options
        params: dict[str, Any] = {f"method.{k}": v for k, v in method.config_dict().items()}
        params.update(opts.protocol.as_params())
        params.update({
            "method": method.name, "dataset": ref.name, "dataset.root": str(Path(ref.root).resolve()),
            "seed": opts.seed, "limit": opts.limit if opts.limit is not None else "all",
            "models.profile": opts.runtime.profile, "device": opts.runtime.device, "dtype": opts.runtime.dtype,
            "metrics.mode": "exact" if opts.exact_metrics else "streaming",
            "harness.git_commit": tracking.git_commit() or "unknown",
        })
        params.update({f"version.{k}": v for k, v in tracking.package_versions().items()})
        for i, spec in enumerate(method.required_models()):
            params[f"model.{i}.{spec.family}"] = f"{spec.describe()} ({spec.role})" if spec.role else spec.describe()
        return params

    def _tags(self, method: Method, ref: DatasetRef, level: str, category: str | None = None) -> dict[str, str]:
        tags = {"method": method.name, "method.display": method.display_name or method.name,
                "dataset": ref.name, "protocol": self.options.protocol.label,
                "weights": "real" if self.options.runtime.weights_are_real else "random",
                tracking.LEVEL_TAG: level}
        if self.options.run_name_suffix:
            tags["variant"] = self.options.run_name_suffix
        tags["complete"] = "false" if (self.options.limit is not None or self.options.categories) else "true"
        defaults = type(method.config)()
        tags["config"] = "default" if method.config == defaults else "custom"
        if category is not None:
            tags["category"] = category
        return tags

    def _run_method_dataset(self, method: Method, ref: DatasetRef, ds: Dataset, categories: list[str],
                            summary: RunSummary) -> None:
        import mlflow

        suffix = f" [{self.options.run_name_suffix}]" if self.options.run_name_suffix else ""
        name = f"{method.name} / {ref.name}{suffix}"
        outcomes: list[CategoryOutcome] = []
        parent = mlflow.start_run(run_name=name, tags=self._tags(method, ref, "parent"))
        summary.parent_run_ids[(method.name, ref.name)] = parent.info.run_id
        try:
            tracking.log_params(self._base_params(method, ref))
            tracking.log_json_artifact({"method": method.name, "config": method.config_dict(),
                                        "dataset": ref.name, "root": str(ref.root),
                                        "protocol": self.options.protocol.as_params(),
                                        "seed": self.options.seed, "runtime": vars(self.options.runtime),
                                        "limit": self.options.limit}, "config.json")
            for category in categories:
                outcome = self._run_category(method, ref, ds, category)
                outcomes.append(outcome)
                summary.outcomes.append(outcome)
            means = dataset_means(outcomes)
            summary.dataset_means[(method.name, ref.name)] = means
            tracking.log_metrics(means)
            excluded = [o.category for o in outcomes if o.status != "failed"
                        and any(math.isnan(o.metrics.get(k, math.nan)) for k in HEADLINE_METRICS)]
            mlflow.set_tag("excluded_categories", ",".join(excluded) or "none")
            failed = [o.category for o in outcomes if o.status == "failed"]
            if failed:
                mlflow.set_tag("failed_categories", ",".join(failed))
            mlflow.end_run(status="FAILED" if failed else "FINISHED")
        except BaseException as exc:
            tracking.log_text_artifact(traceback.format_exc(), "traceback.txt")
            mlflow.end_run(status="KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED")
            raise

    def _run_category(self, method: Method, ref: DatasetRef, ds: Dataset, category: str) -> CategoryOutcome:
        opts = self.options
        cache = self.category_cache(method, ref, category)
        outcome = CategoryOutcome(method.name, ref.name, category, status="ok")
        try:
            with tracking.run(f"{method.name} / {ref.name} / {category}",
                              self._tags(method, ref, "category", category), nested=True):
                samples = select_samples(ds.test_samples(category), opts.limit)
                outcome.n_images = len(samples)
                result = cache.load_result(self.scoring_key)
                missing = [s for s in samples if not cache.has_map(s.id)]
                if result is not None and not missing:
                    outcome.status = "reused"
                    metrics = result["metrics"]
                    outcome.seconds_per_image = result.get("seconds_per_image")
                else:
                    t0 = time.perf_counter()
                    if missing:
                        self._predict_missing(method, ref, ds, category, missing, cache)
                        tracking.log_metrics({f"method.{k}": v for k, v in method.counters().items()})
                    elapsed = time.perf_counter() - t0
                    outcome.n_predicted = len(missing)
                    if missing:
                        outcome.seconds_per_image = elapsed / len(missing)
                    else:
                        outcome.status = "reused"  # maps all cached; only the scoring ran again
                    metrics, curve, grid = self._score(samples, cache)
                    if not ds.has_masks(category):  # image labels only: pixel metrics are undefined
                        metrics.update({k: math.nan for k in metrics if k.startswith("pixel_")})
                        curve = None
                    self._save_figures(method, ref, category, curve, grid, cache)
                    cache.save_result(self.scoring_key,  # last: marks the category done
                                      {"metrics": metrics, "seconds_per_image": outcome.seconds_per_image,
                                       "n_images": len(samples)})
                outcome.metrics = metrics
                if not ds.has_masks(category):
                    import mlflow

                    mlflow.set_tag("pixel_metrics", "none (no masks)")
                tracking.log_metrics(metrics)
                tracking.log_metrics({"n_images": len(samples), "n_predicted": outcome.n_predicted,
                                      **({"seconds_per_image": outcome.seconds_per_image}
                                         if outcome.seconds_per_image is not None else {})})
                self._log_folders(cache)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # fault isolation: record and go on with the next category
            outcome.status = "failed"
            outcome.error = f"{type(exc).__name__}: {exc}"
            self.reporter.message(f"[red]FAILED[/red] {method.name} / {ref.name} / {category}: {outcome.error}")
        return outcome

    def category_cache(self, method: Method, ref: DatasetRef, category: str) -> CategoryCache:
        opts = self.options
        return category_cache(self.cache_root, method.name, method_cache_key(method, opts.runtime, opts.seed),
                              ref.name, ref.root, category)

    @property
    def scoring_key(self) -> str:
        """What, besides the maps, decides a category's metrics."""
        opts = self.options
        return f"{opts.protocol.label}|limit={opts.limit}|metrics={'exact' if opts.exact_metrics else 'streaming'}"

    def prepare_context(self, ref: DatasetRef, ds: Dataset, category: str, cache: CategoryCache) -> PrepareContext:
        cache.stage_dir.mkdir(parents=True, exist_ok=True)
        return PrepareContext(
            category=category, kind=ds.kind, object_name=ds.object_name(category), seed=self.options.seed,
            rng=np.random.default_rng(self.options.seed), reference_samples=lambda: ds.reference_samples(category),
            cache_dir=cache.stage_dir, dataset=ref.name)

    def _predict_missing(self, method: Method, ref: DatasetRef, ds: Dataset, category: str,
                         missing: list, cache: CategoryCache) -> None:
        opts = self.options
        context = self.prepare_context(ref, ds, category, cache)
        method.prepare(context)
        task = self.reporter.task(f"{method.name} / {ref.name} / {category}", total=len(missing))
        try:
            for start in range(0, len(missing), opts.batch_size):
                batch = missing[start:start + opts.batch_size]
                images = [s.image for s in batch]
                maps = method.predict(images)
                if len(maps) != len(batch):
                    raise ValueError(f"{method.name}: predict returned {len(maps)} maps for {len(batch)} images")
                for s, img, m in zip(batch, images, maps):
                    cache.save_map(s.id, check_map(m, img.shape[:2], f"{method.name} on {s.id}"))
                    s.release()
                task.advance(len(batch))
        finally:
            task.close()
        artifacts = method.artifacts()
        if artifacts:
            from .cache import atomic_write_json

            atomic_write_json(cache.stage_dir / "method_artifacts.json", artifacts)

    def _score(self, samples: list, cache: CategoryCache):
        """Two passes over the cached maps: category min/max, then resize + normalise + accumulate."""
        from .metrics import PixelMetrics

        lo, hi = math.inf, -math.inf
        for s in samples:
            m = cache.load_map(s.id)
            if m is None:
                raise RuntimeError(f"cached map for {s.id} vanished from {cache.root}")
            lo, hi = min(lo, float(m.min())), max(hi, float(m.max()))
        metrics = PixelMetrics(exact=self.options.exact_metrics)
        grid_ids = set(_grid_choice(samples, self.options.grid_images))
        grid = []
        for s in samples:
            mask = s.mask
            hw = self.options.protocol.target_hw(mask.shape)
            raw = cache.load_map(s.id)
            amap = minmax(resize_map(raw, hw), lo, hi)
            gt = resize_mask(mask, hw)
            metrics.update([amap], [gt], image_ids=[s.id], image_labels=[max(s.label, int(gt.any()))])
            if s.id in grid_ids:
                grid.append((s.image, mask, minmax(raw, lo, hi)))
            s.release()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # undefined metrics are NaN by design; reported as excluded
            result = {k: float(v) for k, v in metrics.compute().items()}
        try:
            curve = metrics.pr_curve()
        except Exception:
            curve = None
        return result, curve, grid

    def _save_figures(self, method: Method, ref: DatasetRef, category: str, curve, grid, cache: CategoryCache) -> None:
        """PR curve and qualitative grid, kept in the cache so a reused category logs them too."""
        from .plots import save_pr_curve, save_qualitative_grid

        folder = cache.figures_dir(self.scoring_key)
        folder.mkdir(parents=True, exist_ok=True)
        if curve is not None and len(curve[0]):
            save_pr_curve(curve[0], curve[1], folder / f"pr_curve_{category}.png",
                          f"{method.name} / {ref.name} / {category}")
        if grid:
            save_qualitative_grid(*zip(*grid), path=folder / f"qualitative_{category}.png")

    def _log_folders(self, cache: CategoryCache) -> None:
        import mlflow

        figures = cache.figures_dir(self.scoring_key)
        if figures.is_dir() and any(figures.iterdir()):
            mlflow.log_artifacts(str(figures), artifact_path="figures")
        if cache.stage_dir.is_dir() and any(cache.stage_dir.iterdir()):
            mlflow.log_artifacts(str(cache.stage_dir), artifact_path="method")


def _grid_choice(samples: list, n: int) -> list[str]:
    """A few test images for the qualitative grid: defective ones spread over the list, then normal."""
    defective = [s.id for s in samples if s.label == 1]
    normal = [s.id for s in samples if s.label != 1]
    picks = [defective[i] for i in np.linspace(0, len(defective) - 1, min(n - 1, len(defective))).round().astype(int)] \
        if defective and n > 1 else []
    if normal:
        picks.append(normal[0])
    return picks[:n]


def dataset_means(outcomes: list[CategoryOutcome]) -> dict[str, float]:
    """Unweighted means over categories; categories where a metric is undefined (NaN) are excluded."""
    done = [o for o in outcomes if o.status != "failed"]
    keys = sorted({k for o in done for k in o.metrics if not k.startswith("n_")})
    means: dict[str, float] = {}
    for key in keys:
        values = [o.metrics[key] for o in done if key in o.metrics and not math.isnan(o.metrics[key])]
        if values:
            means[key] = float(np.mean(values))
    means["n_categories"] = float(len(done))
    means["n_images"] = float(sum(o.n_images for o in done))
    timed = [(o.seconds_per_image, o.n_predicted or o.n_images) for o in done if o.seconds_per_image is not None]
    if timed:
        means["seconds_per_image"] = float(sum(t * n for t, n in timed) / max(1, sum(n for _, n in timed)))
    return means

