"""Speed and memory of the metric engine against scikit-learn and adeval, on the same data.

    python benchmarks/metrics.py            # MVTec-sized: 1,725 maps at 400x400, then native size
    python benchmarks/metrics.py --quick    # small data, under a minute
    python benchmarks/metrics.py --accuracy # streaming error against exact for several bin counts

Data: real-like maps (zsasbench.metrics.synthetic.realistic_maps: smooth, small defects, heavy ties,
constant regions) written once to a temporary folder; every engine runs in its own subprocess that
loads them, so peaks do not mix. Reported per engine: wall time of the metric computation only, the
peak of memory allocated during it (tracemalloc: numpy and Python allocations) and the growth of
peak RSS over the RSS with the data loaded (Linux /proc; includes allocations tracemalloc cannot see).

Engines (each computes pixel AP and F1-max, or the nearest it offers):
- streaming: PixelMetrics() in batches of 32 - every metric (AP, F1-max, AUROC, AUPRO, image-level).
- exact: PixelMetrics(exact=True) - every metric, equal to scikit-learn.
- sklearn: average_precision_score + precision_recall_curve (F1-max) on the pooled pixels (a view,
  no copy: the maps are already one stacked array).
- adeval: adeval.EvalAccumulator (PyPI adeval, histogram-based) - pixel AUROC and its PR area (a
  trapezoid over 1,000 strips, not scikit-learn's AP; it has no F1-max). adeval 1.1.0 calls np.trapz,
  which numpy 2.4 removed, so the worker aliases np.trapz = np.trapezoid first.

scikit-learn needs about 30 bytes per pixel; when the machine has too little free memory for the full
data it runs on the first images that fit, and the report says so (its time scales as n log n).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENGINES = ("streaming", "exact", "sklearn", "adeval")
SKLEARN_BYTES_PER_PIXEL = 34  # measured peak: 29-31 bytes per pixel (float32 maps, bool masks)


# -- workers (run in subprocesses) -----------------------------------------------------------------


def _proc_status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


def _batches(maps, masks, n_images: int, batch: int = 32):
    """Batches of 32 images (lists of views, no copies) over n_images, cycling through the stored
    maps when n_images is larger."""
    for start in range(0, n_images, batch):
        idx = [i % len(maps) for i in range(start, min(start + batch, n_images))]
        yield [maps[i] for i in idx], [masks[i] for i in idx]


def run_engine(engine: str, maps: np.ndarray, masks: np.ndarray, n_images: int) -> dict:
    if engine in ("streaming", "exact"):
        from zsasbench.metrics import PixelMetrics

        metrics = PixelMetrics(exact=engine == "exact")
        for m, g in _batches(maps, masks, n_images):
            metrics.update(m, g)
        values = metrics.compute()
        if engine == "streaming":
            values["error_bound_pixel_ap"] = metrics.error_bounds()["pixel_ap"]
        return values
    if engine == "sklearn":
        from sklearn.metrics import average_precision_score, precision_recall_curve

        scores, labels = maps[:n_images].reshape(-1), masks[:n_images].reshape(-1)
        ap = average_precision_score(labels, scores)
        precision, recall, _ = precision_recall_curve(labels, scores)
        with np.errstate(invalid="ignore"):
            f1 = float(np.nanmax(2 * precision * recall / (precision + recall)))
        return {"pixel_ap": float(ap), "pixel_f1_max": f1}
    if engine == "adeval":
        np.trapz = np.trapezoid  # adeval 1.1.0 still calls the alias numpy 2.4 removed
        from adeval import EvalAccumulator

        acc = EvalAccumulator(0.0, 1.0, skip_pixel_aupro=True)
        for m, g in _batches(maps, masks, n_images):
            for mi, gi in zip(m, g):  # adeval takes one map at a time
                acc.add_anomap(mi, gi.view(np.uint8))
        summary = acc.summary()
        return {"pixel_ap_trapezoid": float(summary["p_aupr"]), "pixel_auroc": float(summary["p_auroc"])}
    raise ValueError(engine)


def worker(engine: str, data: Path, n_images: int) -> None:
    maps = np.load(data / "maps.npy")
    masks = np.load(data / "masks.npy")
    n_images = n_images or len(maps)
    if engine == "adeval":
        import adeval  # noqa: F401  (its import pulls torch: not part of the measurement)
    else:
        import sklearn.metrics  # noqa: F401
        import zsasbench.metrics  # noqa: F401
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak-RSS mark
    except OSError:
        pass
    rss0 = _proc_status("VmRSS")
    tracemalloc.start()
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = run_engine(engine, maps, masks, n_images)
    seconds = time.perf_counter() - start
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    pixels = n_images * maps.shape[1] * maps.shape[2]
    print(json.dumps({
        "engine": engine, "seconds": seconds, "traced_peak": traced,
        "rss_growth": max(_proc_status("VmHWM") - rss0, 0), "n_images": n_images, "pixels": pixels,
        "values": {k: float(v) for k, v in values.items()},
    }))


# -- accuracy against bins ------------------------------------------------------------------------


def accuracy(quick: bool) -> str:
    """Largest |streaming - exact| per metric over several data sets, for several bin counts."""
    from zsasbench.metrics import PixelMetrics
    from zsasbench.metrics.synthetic import realistic_maps

    keys = ("pixel_ap", "pixel_f1_max", "pixel_auroc", "pixel_aupro")
    n, shape, seeds = (30, (128, 128), 2) if quick else (100, (256, 256), 5)
    sets = []
    for seed in range(seeds):
        sets.append(("real-like", *realistic_maps(n, shape, seed=100 + seed)))
        rng = np.random.default_rng(seed)  # no smoothness, no ties: every bin merges distinct scores
        masks = rng.random((n, *shape)) < 0.05
        sets.append(("uniform noise", np.clip(rng.random((n, *shape)) * 0.9 + 0.1 * masks, 0, 1), masks))
    bins_list = [2**12, 2**14, 2**16, 2**18, 2**20]
    worst = {(kind, b): dict.fromkeys(keys + ("bound_ap",), 0.0) for kind, _, _ in sets for b in bins_list}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for kind, maps, masks in sets:
            exact = PixelMetrics(exact=True)
            exact.update(maps, masks)
            want = exact.compute()
            for b in bins_list:
                metrics = PixelMetrics(bins=b)
                metrics.update(maps, masks)
                got, w = metrics.compute(), worst[(kind, b)]
                for k in keys:
                    w[k] = max(w[k], abs(got[k] - want[k]))
                w["bound_ap"] = max(w["bound_ap"], metrics.error_bounds()["pixel_ap"])
    lines = [f"### Streaming error against exact ({seeds} seeds x {n} maps at {shape[0]}x{shape[1]} per data set)", "",
             "| data | bins | AP | F1-max | AUROC | AUPRO | guaranteed AP bound |", "|---|---|---|---|---|---|---|"]
    for (kind, b), w in worst.items():
        lines.append(f"| {kind} | 2^{int(np.log2(b))} | " + " | ".join(f"{w[k]:.1e}" for k in keys)
                     + f" | {w['bound_ap']:.1e} |")
    return "\n".join(lines)


# -- driver ----------------------------------------------------------------------------------------


def mem_available() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return 1 << 40


def make_data(folder: Path, n: int, shape: tuple[int, int], seed: int) -> None:
    from zsasbench.metrics.synthetic import realistic_maps

    folder.mkdir(parents=True, exist_ok=True)
    maps = np.lib.format.open_memmap(folder / "maps.npy", "w+", np.float32, (n, *shape))
    masks = np.lib.format.open_memmap(folder / "masks.npy", "w+", np.bool_, (n, *shape))
    # Generated in chunks with one global normalisation, like the protocol's per-category min-max.
    chunk = 50
    for i in range(0, n, chunk):
        m, g = realistic_maps(min(chunk, n - i), shape, seed=seed + i)
        maps[i : i + len(m)], masks[i : i + len(m)] = np.stack(m), np.stack(g)
    lo, hi = float(maps.min()), float(maps.max())
    for i in range(0, n, chunk):
        maps[i : i + chunk] = (maps[i : i + chunk] - lo) / (hi - lo)
    maps.flush()
    masks.flush()


def spawn(engine: str, data: Path, n_images: int = 0) -> dict:
    cmd = [sys.executable, __file__, "--worker", engine, "--data", str(data), "--images", str(n_images)]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        return {"engine": engine, "error": (out.stderr.strip().splitlines() or ["failed"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def mb(n: float) -> str:
    return f"{n / 2**20:,.0f} MB" if n >= 2**20 else f"{n / 2**10:,.0f} KB"


def report(title: str, rows: list[dict]) -> str:
    ref = next((r for r in rows if r.get("engine") == "sklearn" and "error" not in r), None)
    exact = next((r for r in rows if r.get("engine") == "exact" and "error" not in r), None)
    lines = [f"### {title}", "",
             "| engine | images | pixels | seconds | Mpixel/s | speed-up vs sklearn | peak traced | "
             "peak RSS growth | pixel AP | F1-max |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['engine']} | failed: {r['error']} |||||||||")
            continue
        rate = r["pixels"] / r["seconds"]
        speedup = f"{rate / (ref['pixels'] / ref['seconds']):.0f}x" if ref else "-"
        v = r["values"]
        ap = v.get("pixel_ap", v.get("pixel_ap_trapezoid", float("nan")))
        label = r["engine"] + (" (PR trapezoid)" if "pixel_ap_trapezoid" in v else "")
        f1 = v.get("pixel_f1_max", float("nan"))
        lines.append(
            f"| {label} | {r['n_images']} | {r['pixels'] / 1e6:,.0f} M | {r['seconds']:.2f} | {rate / 1e6:.1f} | "
            f"{speedup} | {mb(r['traced_peak'])} | {mb(r['rss_growth'])} | {ap:.6f} | {f1:.6f} |"
        )
    if exact:
        for r in rows:
            if r.get("engine") == "streaming" and "error" not in r and r["pixels"] == exact["pixels"]:
                diffs = {k: abs(r["values"][k] - exact["values"][k]) for k in
                         ("pixel_ap", "pixel_f1_max", "pixel_auroc", "pixel_aupro")}
                lines += ["", "streaming - exact: " + ", ".join(f"{k} {d:.1e}" for k, d in diffs.items())
                          + f" (guaranteed AP bound from the histogram: {r['values']['error_bound_pixel_ap']:.1e})"]
    if ref and exact and ref["pixels"] == exact["pixels"]:
        d = max(abs(ref["values"][k] - exact["values"][k]) for k in ("pixel_ap", "pixel_f1_max"))
        lines.append(f"exact - sklearn: max |difference| over AP and F1-max {d:.1e}")
    return "\n".join(lines)


def bench_case(title: str, folder: Path, n: int, shape, engines, stream_images: int = 0) -> str:
    t = time.perf_counter()
    make_data(folder, n, shape, seed=0)
    print(f"[{title}] generated {n} maps of {shape} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    rows = []
    for engine in engines:
        n_images = 0
        if engine == "sklearn":
            fits = int(0.75 * mem_available() / (SKLEARN_BYTES_PER_PIXEL * shape[0] * shape[1]))
            if fits < n:
                n_images = max(fits, 1)
                print(f"[{title}] sklearn limited to {n_images} images by free memory", file=sys.stderr)
        print(f"[{title}] running {engine} ...", file=sys.stderr)
        rows.append(spawn(engine, folder, n_images))
        print(f"[{title}] {json.dumps(rows[-1])}", file=sys.stderr)
    if stream_images:
        print(f"[{title}] streaming over {stream_images} images (cycling the stored maps) ...", file=sys.stderr)
        rows.append(spawn("streaming", folder, stream_images))
    return report(title, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small data (about a minute)")
    parser.add_argument("--engines", default=",".join(ENGINES), help="comma-separated subset of " + ",".join(ENGINES))
    parser.add_argument("--skip-native", action="store_true", help="only the 400x400 case")
    parser.add_argument("--accuracy", action="store_true", help="only the error-against-bins table")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--images", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.data, args.images)
        return
    if args.accuracy:
        print(accuracy(args.quick))
        return
    engines = [e for e in args.engines.split(",") if e]
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start, "
          f"{mem_available() / 2**30:.1f} GiB available", file=sys.stderr)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="zsas-metrics-bench-") as tmp:
        if args.quick:
            parts = [bench_case("quick: 200 maps at 256x256", Path(tmp, "a"), 200, (256, 256), engines)]
            if not args.skip_native:
                parts.append(bench_case("quick: 20 maps at 512x512 (native-size stand-in)", Path(tmp, "b"),
                                        20, (512, 512), engines, stream_images=200))
        else:
            parts = [bench_case("MVTec AD test split size: 1,725 maps at 400x400", Path(tmp, "a"), 1725,
                                (400, 400), engines)]
            if not args.skip_native:
                parts.append(bench_case(
                    "Native resolution 1024x1024, scaled down to 150 maps (MVTec's 1,725 native maps hold "
                    "~1.5 G pixels; scikit-learn would need ~45 GB); last row: streaming over 1,725 maps "
                    "(cycling the 150)", Path(tmp, "b"), 150, (1024, 1024), engines, stream_images=1725))
    print("\n\n".join(parts))
    print(f"\nload average: {load0:.1f} at start, {os.getloadavg()[0]:.1f} at end ({os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
