"""`zsasbench predict`: run one method on unlabelled images and write what a person needs to look at.

Inputs are image files and/or folders (searched recursively, sorted). A folder in the folder-dataset
layout (`PATH/test/...`, optional `PATH/train/good/`) is read as its test images, with `train/good`
as the default normal references; its `ground_truth/` masks are never taken for images.

Everything is checked before the method computes anything: every path exists, every folder holds
images, every image decodes (all bad files are named at once), the output folder is usable and the
method's weights are present. Then, per image (outputs named by the path relative to the inputs'
common folder, so two `0001.png` in different folders never collide):

    maps/<name>.npy       the raw anomaly map, float32, the image's H x W
    maps/<name>.png       the same map as a 16-bit PNG scaled over the run's min..max (scale.json
                          inverts it: value = min + png / 65535 * (max - min))
    overlays/<name>.png   heat map (the run's min..max -> jet) over the image, with the method's
                          boxes and labels drawn when it exposes them (see `last_detections`)
plus scores.csv (one row per image, input order; image score = map max), scale.json, method.json
(config, object name, prompts and other method artifacts), detections.json (when the method has
boxes) and index.html (the overlays sorted by image score, most anomalous first).

Optional method hook (nothing requires it): after `predict(images)`, a method may hold in
`last_detections` one entry per image of that call, a dict with
    "boxes":  [[x0, y0, x1, y1], ...] in the image's pixel coordinates,
    "labels": [str, ...] (optional, one per box), "scores": [float, ...] (optional, one per box),
    "prompt": str (optional, the text prompt used for that image).
The method must reset it on every predict() call; a list of the wrong length or a malformed entry
is an error naming the method (a silent mismatch would draw one image's boxes on another).
"""
from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import time
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError

from .datasets.base import IMAGE_EXTENSIONS, Sample
from .datasets.common import has_child_dir, visible_dirs
from .errors import DataError, UserError
from .methods.base import Method, PrepareContext
from .models.base import check_present
from .progress import Reporter, SilentReporter
from .protocol import check_map, minmax

PNG16_MAX = 65535
CSV_COLUMNS = ("file", "score", "rank", "height", "width", "map_png", "map_npy", "overlay", "n_boxes")
OUTPUT_FILES = ("scores.csv", "scale.json", "method.json", "detections.json", "index.html")
OUTPUT_DIRS = ("maps", "overlays", "method")
MAX_LISTED_ERRORS = 20


# --- data classes at the seams ------------------------------------------------------------------
@dataclass
class InputImage:
    """One image to predict: the path as given, its unique id (relative path) and size."""

    path: Path
    id: str
    height: int = 0
    width: int = 0


@dataclass
class Detections:
    """Boxes (x0, y0, x1, y1 in image pixels) a method exposes for one image."""

    boxes: list[list[float]] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    prompt: str | None = None


@dataclass
class PredictedImage:
    file: str  # the input path
    id: str  # relative path, unique in the run
    height: int
    width: int
    score: float  # image score: the raw map's maximum
    map_png: str  # paths relative to the output folder
    map_npy: str
    overlay: str
    rank: int = 0  # 1 = most anomalous
    detections: Detections | None = None


@dataclass
class PredictionReport:
    method: str
    output: Path
    object_name: str
    kind: str
    images: list[PredictedImage]
    n_references: int
    map_min: float
    map_max: float
    seconds: float
    csv: Path
    html: Path
    scale: Path

    def ranked(self) -> list[PredictedImage]:
        return sorted(self.images, key=lambda p: p.rank)


# --- finding the inputs -------------------------------------------------------------------------
def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def walk_images(folder: Path, exclude: Sequence[Path] = ()) -> list[Path]:
    """Image files under `folder`, recursively, sorted by relative path (folder parts compared one
    by one). Hidden and `__MACOSX`-style folders are skipped, as are any folder in `exclude` (the
    output folder, so re-running into a folder inside an input never reads its own overlays) and
    the output folders of earlier predict runs (`predict .` must not read runs/predict/*)."""
    excluded = {p.resolve() for p in exclude}
    found: list[tuple[tuple[str, ...], Path]] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__"))
                             and (here / d).resolve() not in excluded and not is_predict_output(here / d))
        names = [n for n in filenames if _is_image_name(n)]
        for name in names:
            p = here / name
            if _is_mask_beside_image(p, names):
                continue
            found.append((p.relative_to(folder).parts, p))
    return [p for _, p in sorted(found)]


def _is_mask_beside_image(path: Path, names: Sequence[str]) -> bool:
    """A single-channel .png next to a same-stem image of another format and the same size is that
    image's mask (the MTD release keeps `<name>.jpg` and its mask `<name>.png` side by side)."""
    if path.suffix.lower() != ".png":
        return False
    twins = [n for n in names if Path(n).stem == path.stem and Path(n).suffix.lower() != ".png"]
    if not twins:
        return False
    from PIL import Image

    try:
        with Image.open(path) as mask, Image.open(path.with_name(twins[0])) as image:
            return mask.mode in ("1", "L", "P") and mask.size == image.size
    except OSError:
        return False


def is_predict_output(folder: Path) -> bool:
    """A folder an earlier `predict` wrote (its maps and overlays are not inputs)."""
    return (folder / "scale.json").is_file() and (folder / "scores.csv").is_file()


def _tree_categories(folder: Path) -> list[str]:
    return [d.name for d in visible_dirs(folder) if has_child_dir(d, "test")]


def expand_inputs(inputs: Sequence[str | Path], exclude: Sequence[Path] = (),
                  what: str = "input") -> tuple[list[Path], list[Path], str | None]:
    """Files and folders -> (images, references found in folder-dataset trees, a default object
    name). Raises UserError for a missing path, a non-image file, an empty folder, a multi-category
    tree."""
    if not inputs:
        raise UserError(f"no {what} given: pass image files and/or folders")
    images: list[Path] = []
    refs: list[Path] = []
    folder_names: list[str] = []
    for raw in inputs:
        p = Path(raw).expanduser()
        if not p.exists():
            raise UserError(f"{what} {p}: no such file or folder")
        if p.is_file():
            if not _is_image_name(p.name):
                raise DataError(f"{p}: not an image file (accepted: {', '.join(IMAGE_EXTENSIONS)})")
            images.append(p)
            continue
        if not p.is_dir():
            raise UserError(f"{what} {p}: neither a file nor a folder")
        if has_child_dir(p, "test"):  # folder-dataset tree: its test images, train/good as references
            found = walk_images(p / "test", exclude)
            refs.extend(walk_images(p / "train" / "good", exclude) if has_child_dir(p, "train") else [])
            where = f"{p / 'test'} (a folder-dataset tree: images are read from test/)"
        else:
            cats = _tree_categories(p)
            if cats:
                raise UserError(f"{what} {p} holds folder-dataset categories ({', '.join(cats)}): predict one "
                                f"category at a time, e.g. {p / cats[0]}")
            found = walk_images(p, exclude)
            where = str(p)
        if not found:
            raise DataError(f"{where}: empty folder: no image found in it or its sub-folders "
                            f"(looked for {', '.join(IMAGE_EXTENSIONS)})")
        images.extend(found)
        folder_names.append(p.resolve().name)
    default_name = folder_names[0].replace("_", " ").lower() if len(folder_names) == 1 else None
    return images, refs, default_name


def assign_ids(paths: Sequence[Path]) -> list[InputImage]:
    """Unique ids: each path relative to the common folder of all inputs. The same file given twice
    (or reached through two inputs) is kept once, at its first position."""
    seen: set[Path] = set()
    kept: list[tuple[Path, Path]] = []
    for p in paths:
        r = p.resolve()
        if r not in seen:
            seen.add(r)
            kept.append((p, r))
    if not kept:
        return []
    base = Path(os.path.commonpath([str(r.parent) for _, r in kept]))
    return [InputImage(path=p, id=r.relative_to(base).as_posix()) for p, r in kept]


def output_names(ids: Sequence[str]) -> list[str]:
    """Output name per id (no extension): the id without its extension; where two ids would then
    clash (a.png and a.jpg; case-insensitively, for such file systems) the extension joins the name
    (a_png, a_jpg); any clash left gets a -2, -3... suffix. Deterministic for a given id list."""
    def plain(i: str) -> str:
        return i[: -len(Path(i).suffix)] if Path(i).suffix else i

    counts: dict[str, int] = {}
    for i in ids:
        counts[plain(i).lower()] = counts.get(plain(i).lower(), 0) + 1
    names, used = [], set()
    for i in ids:
        name = plain(i)
        if counts[name.lower()] > 1:
            name = name + "_" + Path(i).suffix.lstrip(".").lower()
        candidate, n = name, 1
        while candidate.lower() in used:
            n += 1
            candidate = f"{name}-{n}"
        used.add(candidate.lower())
        names.append(candidate)
    return names


def probe_image(path: Path) -> tuple[int, int]:
    """(H, W) after a full decode (a header read would not catch a truncated file)."""
    try:
        with Image.open(path) as im:
            im.load()
            return im.height, im.width
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def load_rgb(path: Path) -> np.ndarray:
    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert("RGB"))  # a writable copy: torch warns on read-only arrays
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: unreadable or truncated image ({exc})") from exc


def probe_all(images: Sequence[InputImage], reporter: Reporter, what: str = "checking images") -> None:
    """Decode every image once, filling in sizes; every unreadable file is named in one error."""
    bad: list[str] = []
    task = reporter.task(what, total=len(images))
    try:
        for img in images:
            try:
                img.height, img.width = probe_image(img.path)
            except DataError as exc:
                bad.append(str(exc))
            task.advance()
    finally:
        task.close()
    if bad:
        more = f"\n  ... and {len(bad) - MAX_LISTED_ERRORS} more" if len(bad) > MAX_LISTED_ERRORS else ""
        raise DataError(f"{len(bad)} unreadable image(s):\n  " + "\n  ".join(bad[:MAX_LISTED_ERRORS]) + more)


# --- the output folder --------------------------------------------------------------------------
def prepare_output(output: Path, overwrite: bool) -> None:
    """Refuse a non-empty output folder unless `overwrite`; then remove only what predict writes."""
    if output.exists() and not output.is_dir():
        raise UserError(f"--output {output}: exists and is not a folder")
    if output.is_dir() and any(output.iterdir()):
        if not overwrite:
            raise UserError(f"--output {output}: folder is not empty; choose another or pass --overwrite "
                            f"(which replaces only {', '.join(OUTPUT_DIRS + OUTPUT_FILES)})")
        import shutil

        for d in OUTPUT_DIRS:
            if (output / d).is_dir():
                shutil.rmtree(output / d)
        for f in OUTPUT_FILES:
            if (output / f).is_file():
                (output / f).unlink()
    try:
        output.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--output {output}: cannot create the folder ({exc})") from exc


# --- method hook ---------------------------------------------------------------------------------
def read_detections(method: Method, n_images: int) -> list[Detections | None]:
    """The method's `last_detections` for the last predict() call, validated (None per image when
    the method does not expose any)."""
    raw = getattr(method, "last_detections", None)
    if raw is None:
        return [None] * n_images
    name = method.name or type(method).__name__
    if not isinstance(raw, (list, tuple)) or len(raw) != n_images:
        got = len(raw) if isinstance(raw, (list, tuple)) else type(raw).__name__
        raise ValueError(f"{name}: last_detections must hold one entry per image of the last predict() "
                         f"call ({n_images}), got {got}")
    out: list[Detections | None] = []
    for i, entry in enumerate(raw):
        if entry is None:
            out.append(None)
            continue
        if not isinstance(entry, dict):
            raise ValueError(f"{name}: last_detections[{i}] must be a dict with 'boxes', got {type(entry).__name__}")
        boxes = np.asarray(entry.get("boxes", []), dtype=np.float64).reshape(-1, 4) \
            if len(entry.get("boxes", [])) else np.zeros((0, 4))
        labels = [str(v) for v in entry.get("labels", [])]
        scores = [float(v) for v in entry.get("scores", [])]
        for key, values in (("labels", labels), ("scores", scores)):
            if values and len(values) != len(boxes):
                raise ValueError(f"{name}: last_detections[{i}] has {len(boxes)} boxes but {len(values)} {key}")
        if not np.isfinite(boxes).all():
            raise ValueError(f"{name}: last_detections[{i}] has non-finite box coordinates")
        prompt = entry.get("prompt")
        out.append(Detections(boxes=boxes.tolist(), labels=labels, scores=scores,
                              prompt=None if prompt is None else str(prompt)))
    return out


# --- drawing and writing -------------------------------------------------------------------------
def map_to_png16(amap: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return np.round(minmax(amap, lo, hi) * PNG16_MAX).astype(np.uint16)


def png16_to_map(png: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Invert `map_to_png16` (to within (hi - lo) / 65535 / 2)."""
    return (lo + png.astype(np.float64) / PNG16_MAX * (hi - lo)).astype(np.float32)


def draw_detections(overlay: np.ndarray, det: Detections) -> np.ndarray:
    """White boxes with a black edge (visible on any jet colour), label and score above each."""
    from PIL import ImageDraw

    im = Image.fromarray(overlay)
    draw = ImageDraw.Draw(im)
    width = max(1, min(overlay.shape[:2]) // 200)
    for k, (x0, y0, x1, y1) in enumerate(det.boxes):
        x0, x1 = sorted((x0, x1))
        y0, y1 = sorted((y0, y1))
        draw.rectangle([x0 - width, y0 - width, x1 + width, y1 + width], outline=(0, 0, 0), width=width)
        draw.rectangle([x0, y0, x1, y1], outline=(255, 255, 255), width=width)
        text = " ".join(t for t in (det.labels[k] if det.labels else "",
                                    f"{det.scores[k]:.2f}" if det.scores else "") if t)
        if text:
            tb = draw.textbbox((0, 0), text)
            th = tb[3] - tb[1] + 2
            ty = y0 - width - th if y0 - width - th >= 0 else \
                y1 + width + 1 if y1 + width + 1 + th <= overlay.shape[0] else y0 + width  # above, below, inside
            box = draw.textbbox((x0, ty), text)
            draw.rectangle(box, fill=(0, 0, 0))
            draw.text((x0, ty), text, fill=(255, 255, 255))
    return np.asarray(im)


def _save_png(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # zlib level 1: 4-5x faster than PIL's default 6 for ~5-15 % larger files (encoding dominated the run)
    Image.fromarray(arr).save(path, compress_level=1)


def _save_npy(path: Path, arr: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(arr, dtype=np.float32), allow_pickle=False)


def write_csv(path: Path, items: Sequence[PredictedImage]) -> None:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for p in items:
        w.writerow([p.file, repr(float(p.score)), p.rank, p.height, p.width, p.map_png, p.map_npy, p.overlay,
                    len(p.detections.boxes) if p.detections else ""])
    path.write_text(buf.getvalue(), encoding="utf-8")


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _href(rel: str) -> str:
    return "/".join(urllib.parse.quote(part) for part in rel.split("/"))


def render_html(report: PredictionReport, artifacts: dict[str, Any]) -> str:
    """A self-contained page: overlays as cards, most anomalous first."""
    e = html.escape
    cards = []
    for p in report.ranked():
        det = ""
        if p.detections and (p.detections.boxes or p.detections.prompt):
            n = len(p.detections.boxes)
            labels = p.detections.labels or [""] * n
            box_scores = p.detections.scores or [None] * n
            parts = [" ".join(t for t in (e(lab), "" if s is None else f"{s:.2f}") if t)
                     for lab, s in zip(labels, box_scores)]
            listed = ", ".join(t for t in parts if t)
            det = f"<div class='det'>{n} box(es){': ' + listed if listed else ''}"
            if p.detections.prompt:
                det += f"<br>prompt: {e(p.detections.prompt)}"
            det += "</div>"
        cards.append(
            f"<figure class='card' data-score='{p.score!r}' data-file='{e(p.id)}'>"
            f"<a href='{_href(p.overlay)}'><img loading='lazy' src='{_href(p.overlay)}' alt='{e(p.id)}'></a>"
            f"<figcaption><b>#{p.rank}</b> score <b>{p.score:.6g}</b><br><span class='file'>{e(p.id)}</span>"
            f"<br>{p.width}x{p.height} · <a href='{_href(p.map_png)}'>map png</a> · "
            f"<a href='{_href(p.map_npy)}'>npy</a>{det}</figcaption></figure>")
    extra = ""
    if artifacts:
        extra = (f"<details><summary>method outputs (prompts etc.)</summary><pre>"
                 f"{e(json.dumps(artifacts, indent=2, sort_keys=True, default=str))}</pre></details>")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>zsasbench predict: {e(report.method)}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 12px; }}
.card {{ margin: 0; width: 260px; border: 1px solid #ccc; padding: 6px; }}
.card img {{ width: 100%; height: auto; display: block; }}
.file {{ font-family: monospace; word-break: break-all; }}
.det {{ font-size: smaller; color: #444; }}
</style></head><body>
<h1>{e(report.method)}: {len(report.images)} image(s), most anomalous first</h1>
<p>Object: <b>{e(report.object_name)}</b> ({e(report.kind)}); {report.n_references} reference image(s).
Image score = maximum of the raw anomaly map. Overlays share one colour scale: the run's map range
{report.map_min:.6g} (blue) to {report.map_max:.6g} (red). Files: <a href="scores.csv">scores.csv</a>,
<a href="scale.json">scale.json</a>, <a href="method.json">method.json</a>.</p>
{extra}
<div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""


# --- the run ------------------------------------------------------------------------------------
def collect(inputs: Sequence[str | Path], references: Sequence[str | Path] | None, exclude: Sequence[Path],
            ) -> tuple[list[InputImage], list[InputImage], str | None]:
    """Inputs and references as InputImages (ids and names; sizes filled by `probe_all`). Explicit
    references replace those of a folder-dataset tree."""
    paths, tree_refs, default_name = expand_inputs(inputs, exclude)
    images = assign_ids(paths)
    if references:
        ref_paths, _, _ = expand_inputs(references, exclude, what="reference")
    else:
        ref_paths = tree_refs
    refs = assign_ids(ref_paths)
    return images, refs, default_name


def predict_images(method: Method, inputs: Sequence[str | Path], output: str | Path,
                   object_name: str | None = None, kind: str = "object",
                   references: Sequence[str | Path] | None = None, reporter: Reporter | None = None,
                   seed: int = 111, batch_size: int = 4, overwrite: bool = False) -> PredictionReport:
    """Run `method` on the images in `inputs` and write maps, overlays, scores.csv and index.html
    into `output`. See the module docstring for the files. Everything is checked before compute."""
    reporter = reporter or SilentReporter()
    output = Path(output)
    if kind not in ("object", "texture"):
        raise UserError(f"--kind {kind!r}: expected object or texture")
    if batch_size < 1:
        raise UserError(f"batch size {batch_size}: expected a positive number")
    images, refs, default_name = collect(inputs, references, exclude=[output])
    object_name = (object_name or "").strip() or default_name or "object"
    check_present(method.required_models(), method.runtime)
    probe_all(images, reporter)
    probe_all(refs, reporter, "checking references")
    prepare_output(output, overwrite)
    names = output_names([i.id for i in images])

    category = object_name
    ref_samples = [Sample(id=r.id, category=category, label=0, image_path=r.path) for r in refs]
    t0 = time.perf_counter()
    context = PrepareContext(category=category, kind=kind, object_name=object_name, seed=seed,
                             rng=np.random.default_rng(seed), reference_samples=lambda: list(ref_samples),
                             cache_dir=output / "method", dataset="predict")
    (output / "method").mkdir(parents=True, exist_ok=True)
    method.prepare(context)

    # pass 1: predict, keep the raw maps on disk (memory stays flat for any number of images)
    scores: list[float] = []
    detections: list[Detections | None] = []
    lo, hi = math.inf, -math.inf
    task = reporter.task(f"predict {method.name}", total=len(images))
    try:
        for start in range(0, len(images), batch_size):
            batch = images[start:start + batch_size]
            arrays = [load_rgb(i.path) for i in batch]
            maps = method.predict(arrays)
            if len(maps) != len(batch):
                raise ValueError(f"{method.name}: predict returned {len(maps)} maps for {len(batch)} images")
            detections.extend(read_detections(method, len(batch)))
            for img, arr, m, name in zip(batch, arrays, maps, names[start:start + batch_size]):
                m = check_map(m, arr.shape[:2], f"{method.name} on {img.path}")
                _save_npy(output / "maps" / f"{name}.npy", m)
                scores.append(float(m.max()))
                lo, hi = min(lo, float(m.min())), max(hi, float(m.max()))
            task.advance(len(batch))
    finally:
        task.close()
    seconds = time.perf_counter() - t0

    # pass 2: one colour / 16-bit scale for the whole run, so images compare with each other
    order = sorted(range(len(images)), key=lambda k: (-scores[k], images[k].id))
    rank = {k: r + 1 for r, k in enumerate(order)}
    items: list[PredictedImage] = []
    from .plots import heat_overlay

    task = reporter.task("writing maps and overlays", total=len(images))
    try:
        for k, (img, name) in enumerate(zip(images, names)):
            raw = np.load(output / "maps" / f"{name}.npy")
            _save_png(output / "maps" / f"{name}.png", map_to_png16(raw, lo, hi))
            overlay = heat_overlay(load_rgb(img.path), minmax(raw, lo, hi))
            if detections[k] is not None and detections[k].boxes:
                overlay = draw_detections(overlay, detections[k])
            _save_png(output / "overlays" / f"{name}.png", overlay)
            items.append(PredictedImage(file=str(img.path), id=img.id, height=img.height, width=img.width,
                                        score=scores[k], map_png=f"maps/{name}.png", map_npy=f"maps/{name}.npy",
                                        overlay=f"overlays/{name}.png", rank=rank[k], detections=detections[k]))
            task.advance()
    finally:
        task.close()

    report = PredictionReport(method=method.name, output=output, object_name=object_name, kind=kind, images=items,
                              n_references=len(refs), map_min=lo, map_max=hi, seconds=seconds,
                              csv=output / "scores.csv", html=output / "index.html", scale=output / "scale.json")
    write_csv(report.csv, items)
    report.scale.write_text(json.dumps({
        "min": lo, "max": hi, "png_max": PNG16_MAX, "constant": hi <= lo,
        "formula": "value = min + png / png_max * (max - min)",
        "note": "maps/*.png are 16-bit, scaled over this run's min..max; maps/*.npy hold the raw float32 maps",
    }, indent=2))
    artifacts = method.artifacts()
    (output / "method.json").write_text(json.dumps({
        "method": method.name, "config": method.config_dict(), "object_name": object_name, "kind": kind,
        "seed": seed, "runtime": asdict(method.runtime), "n_images": len(items), "n_references": len(refs),
        "references": [str(r.path) for r in refs], "artifacts": artifacts,
        "seconds_per_image": seconds / max(1, len(items)),
    }, indent=2, sort_keys=True, default=str))
    if any(d is not None for d in detections):
        (output / "detections.json").write_text(json.dumps(
            {p.id: asdict(p.detections) for p in items if p.detections is not None}, indent=2, sort_keys=True))
    report.html.write_text(render_html(report, artifacts), encoding="utf-8")
    if not any((output / "method").iterdir()):
        (output / "method").rmdir()
    return report


def log_prediction(report: PredictionReport, method: Method, inputs: Sequence[str | Path]) -> str:
    """Log a finished prediction as one MLflow run (call `tracking.connect` first, before compute):
    params (method config, object name, kind, profile), metrics (counts, timing, score range) and
    the whole output folder as artifacts. Returns the run id."""
    import mlflow

    from . import tracking

    tags = {"method": method.name, "method.display": method.display_name or method.name, "dataset": "predict",
            "weights": "real" if method.runtime.weights_are_real else "random", tracking.LEVEL_TAG: "predict"}
    with tracking.run(f"predict / {method.name} / {report.object_name}", tags) as active:
        params: dict[str, Any] = {f"method.{k}": v for k, v in method.config_dict().items()}
        params.update({"method": method.name, "object_name": report.object_name, "kind": report.kind,
                       "models.profile": method.runtime.profile, "device": method.runtime.device,
                       "inputs": [str(i) for i in inputs], "output": str(report.output.resolve()),
                       "harness.git_commit": tracking.git_commit() or "unknown"})
        for i, spec in enumerate(method.required_models()):
            params[f"model.{i}.{spec.family}"] = spec.describe()
        tracking.log_params(params)
        s = [p.score for p in report.images]
        tracking.log_metrics({"n_images": len(s), "n_references": report.n_references,
                              "seconds_per_image": report.seconds / max(1, len(s)),
                              "score_max": max(s), "score_mean": float(np.mean(s)), "score_min": min(s)})
        mlflow.log_artifacts(str(report.output), artifact_path="predict")
        return active.info.run_id
