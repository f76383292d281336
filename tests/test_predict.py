"""`zsasbench predict` on unlabelled images (library and CLI), and `run --dataset folder=PATH` through
the Runner on trees with and without masks."""
from __future__ import annotations

import html
import json
import math
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from fake_datasets import make_mvtec_tree, truncate, write_image
from zsasbench.cli_predict import predict as predict_command
from zsasbench.errors import DataError, MissingWeightsError, UserError
from zsasbench.methods import create_method
from zsasbench.methods.base import Method, MethodConfig
from zsasbench.models.base import ModelSpec, Runtime
from zsasbench.plots import heat_overlay
from zsasbench.predict import (output_names, png16_to_map, predict_images, read_csv)
from zsasbench.protocol import minmax

HW = (18, 26)


def make_tree(root: Path, masks: bool = True, train: bool = True) -> Path:
    """PATH/test/{good,dent,scratch}/ (+ ground_truth/, train/good/), as the folder dataset reads."""
    make_mvtec_tree(root.parent, (root.name,), hw=HW, defects=("dent", "scratch"), n_train=3 if train else 0)
    if not masks:
        shutil.rmtree(root / "ground_truth")
    if not train:
        shutil.rmtree(root / "train", ignore_errors=True)
    return root


def make_flat(root: Path) -> list[Path]:
    """Images of different sizes, two folders sharing file names, and a .png/.jpg pair sharing a stem."""
    return [write_image(root / "a" / "0.png", 20, 30), write_image(root / "b" / "0.png", 21, 17),
            write_image(root / "b" / "0.jpg", 16, 40), write_image(root / "b" / "deep" / "x.bmp", 25, 25, grey=True)]


@dataclass
class SpyConfig(MethodConfig):
    with_boxes: bool = False
    bad_boxes: bool = False


class Spy(Method):
    """Map = brightness (so scores differ per image); records prepare/predict calls; optional boxes."""

    name = "spy"
    Config = SpyConfig

    def __init__(self, config=None, runtime=None):
        super().__init__(config, runtime)
        self.contexts, self.n_predicted = [], 0
        self.last_detections = None

    def prepare(self, context):
        self.contexts.append(context)
        self.references = list(context.reference_samples())

    def predict(self, images):
        self.n_predicted += len(images)
        if self.config.with_boxes:
            self.last_detections = [{"boxes": [[10, 30, 40, 50]], "labels": ["scratch"], "scores": [0.75],
                                     "prompt": "scratch on metal bracket"} for _ in images]
        if self.config.bad_boxes:
            self.last_detections = [{"boxes": [[1, 2, 3, 4]], "labels": ["a", "b"]} for _ in images]
        return [img.astype(np.float32).mean(axis=2) / 255.0 for img in images]


def image_hw(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.height, im.width


def html_cards(path: Path) -> list[tuple[str, float]]:
    text = path.read_text()
    return [(html.unescape(f), float(s)) for s, f in re.findall(r"data-score='([^']+)' data-file='([^']+)'", text)]


def check_outputs(report, expected_files: list[Path]) -> None:
    """Every image has a finite float32 map of its own size, a 16-bit PNG that inverts to it, an
    overlay; the CSV has one row per image; the HTML lists every image once, by score descending."""
    out = report.output
    rows = read_csv(report.csv)
    assert [Path(r["file"]) for r in rows] == expected_files
    assert len({r["overlay"] for r in rows}) == len(rows) == len({r["map_npy"] for r in rows})
    lo, hi = report.map_min, report.map_max
    for row in rows:
        hw = image_hw(Path(row["file"]))
        assert (int(row["height"]), int(row["width"])) == hw
        raw = np.load(out / row["map_npy"])
        assert raw.dtype == np.float32 and raw.shape == hw and np.isfinite(raw).all()
        assert float(row["score"]) == pytest.approx(float(raw.max()), rel=1e-6)
        with Image.open(out / row["map_png"]) as im:
            png = np.asarray(im)
            assert im.mode.startswith("I") and png.shape == hw
        np.testing.assert_allclose(png16_to_map(png, lo, hi), raw, atol=(hi - lo) / 65535 + 1e-7)
        with Image.open(out / row["overlay"]) as im:
            assert (im.height, im.width) == hw and im.mode == "RGB"
    scale = json.loads((out / "scale.json").read_text())
    assert scale["min"] == pytest.approx(lo) and scale["max"] == pytest.approx(hi)
    cards = html_cards(report.html)
    assert sorted(f for f, _ in cards) == sorted(p.id for p in report.images)
    scores = [s for _, s in cards]
    assert scores == sorted(scores, reverse=True)
    by_rank = sorted(rows, key=lambda r: int(r["rank"]))
    assert [float(r["score"]) for r in by_rank] == sorted((float(r["score"]) for r in rows), reverse=True)


# --- library ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("masks,train", [(True, True), (False, True), (True, False), (False, False)])
def test_predict_tree_with_local_contrast(tmp_path, masks, train):
    root = make_tree(tmp_path / "bracket", masks=masks, train=train)
    method = create_method("local-contrast")
    report = predict_images(method, [root], tmp_path / "out", object_name="metal bracket")
    expected = sorted((root / "test").rglob("*.png"), key=lambda p: p.relative_to(root / "test").parts)
    assert len(expected) == 8
    check_outputs(report, expected)
    assert report.n_references == (3 if train else 0)
    assert not any("ground_truth" in p.file or "train" in p.file for p in report.images)  # masks never images
    meta = json.loads((tmp_path / "out" / "method.json").read_text())
    assert meta["object_name"] == "metal bracket" and meta["config"]["windows"] == [5, 11]


def test_references_context_and_seed(tmp_path):
    root = make_tree(tmp_path / "bracket")
    spy = Spy()
    predict_images(spy, [root], tmp_path / "o1", kind="texture", seed=5)
    ctx = spy.contexts[0]
    assert (ctx.kind, ctx.object_name, ctx.seed) == ("texture", "bracket", 5)  # name defaults to the folder's
    assert [s.image_path.name for s in spy.references] == ["000.png", "001.png", "002.png"]
    assert all(s.label == 0 for s in spy.references)
    assert ctx.rng.integers(1 << 30) == np.random.default_rng(5).integers(1 << 30)
    other = make_flat(tmp_path / "refs")
    spy2 = Spy()
    predict_images(spy2, [root / "test" / "good"], tmp_path / "o2", references=[tmp_path / "refs"])
    assert sorted(s.image_path for s in spy2.references) == sorted(other)  # explicit references, recursive
    assert spy2.contexts[0].object_name == "good"


def test_unique_names_when_inputs_share_file_names(tmp_path):
    flat = make_flat(tmp_path / "flat")
    single = write_image(tmp_path / "other" / "0.png", 12, 14)
    # the folder, a file again inside it (kept once), and a file elsewhere with a clashing name
    report = predict_images(Spy(), [tmp_path / "flat", flat[0], single], tmp_path / "out")
    expected = [flat[0], flat[2], flat[1], flat[3], single]  # a/0.png, b/0.jpg, b/0.png, b/deep/x.bmp
    check_outputs(report, expected)
    assert [p.id for p in report.images] == ["flat/a/0.png", "flat/b/0.jpg", "flat/b/0.png", "flat/b/deep/x.bmp",
                                             "other/0.png"]
    assert [p.overlay for p in report.images] == ["overlays/flat/a/0.png", "overlays/flat/b/0_jpg.png",
                                                  "overlays/flat/b/0_png.png", "overlays/flat/b/deep/x.png",
                                                  "overlays/other/0.png"]


def test_constant_maps_invert_exactly(tmp_path):
    for i in range(2):
        (tmp_path / "grey").mkdir(exist_ok=True)
        Image.fromarray(np.full((9, 11, 3), 77, np.uint8)).save(tmp_path / "grey" / f"{i}.png")
    report = predict_images(Spy(), [tmp_path / "grey"], tmp_path / "out")
    assert json.loads(report.scale.read_text())["constant"] is True
    check_outputs(report, sorted((tmp_path / "grey").iterdir()))


def test_output_names_unique_case_insensitively():
    names = output_names(["a.png", "A.jpg", "a_png.bmp", "x/b.png", "x/b.PNG"])
    assert len({n.lower() for n in names}) == 5
    assert names[0] == "a_png" and names[2] == "a_png-2"
    assert output_names(["q/r.png", "s.png"]) == ["q/r", "s"]


def test_output_folder_inside_input_is_not_read_back(tmp_path):
    make_flat(tmp_path / "flat")
    out = tmp_path / "flat" / "results"
    predict_images(Spy(), [tmp_path / "flat"], out)
    report = predict_images(Spy(), [tmp_path / "flat"], out, overwrite=True)
    assert len(report.images) == 4
    report = predict_images(Spy(), [tmp_path / "flat"], tmp_path / "flat" / "again")  # earlier outputs skipped
    assert len(report.images) == 4


def test_detections_hook_is_drawn_and_listed(tmp_path):
    write_image(tmp_path / "big" / "p.png", 60, 80)
    report = predict_images(Spy(SpyConfig(with_boxes=True)), [tmp_path / "big"], tmp_path / "out")
    item = report.images[0]
    raw = np.load(report.output / item.map_npy)
    with Image.open(item.file) as im:
        plain = heat_overlay(np.asarray(im.convert("RGB")), minmax(raw, report.map_min, report.map_max))
    drawn = np.asarray(Image.open(report.output / item.overlay))
    assert (drawn[50, 12:38] == 255).all() and (drawn[32:48, 40] == 255).all()  # bottom and right edges white
    assert (drawn[51, 12:38] == 0).all()  # with a black rim outside
    assert np.array_equal(drawn[:5, 50:], plain[:5, 50:])  # away from the box and label: the plain overlay
    dets = json.loads((report.output / "detections.json").read_text())
    assert dets["p.png"]["labels"] == ["scratch"] and dets["p.png"]["boxes"] == [[10.0, 30.0, 40.0, 50.0]]
    page = report.html.read_text()
    assert "scratch 0.75" in page and "scratch on metal bracket" in page
    assert read_csv(report.csv)[0]["n_boxes"] == "1"
    with pytest.raises(ValueError, match="spy: last_detections.0. has 1 boxes but 2 labels"):
        predict_images(Spy(SpyConfig(bad_boxes=True)), [tmp_path / "big"], tmp_path / "out2")


# --- errors, all before compute ----------------------------------------------------------------------
def test_errors_before_compute(tmp_path):
    flat = make_flat(tmp_path / "flat")
    spy = Spy()
    with pytest.raises(UserError, match=r"nope: no such file or folder"):
        predict_images(spy, [tmp_path / "flat", tmp_path / "nope"], tmp_path / "o")
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(DataError, match=r"empty: empty folder: no image found"):
        predict_images(spy, [tmp_path / "empty"], tmp_path / "o")
    with pytest.raises(DataError, match=r"notes.txt: not an image file"):
        predict_images(spy, [tmp_path / "empty" / "notes.txt"], tmp_path / "o")
    truncate(flat[1])
    truncate(flat[3])
    with pytest.raises(DataError) as err:
        predict_images(spy, [tmp_path / "flat"], tmp_path / "o")
    assert "2 unreadable image(s)" in str(err.value)
    assert str(flat[1]) in str(err.value) and str(flat[3]) in str(err.value)
    good = make_tree(tmp_path / "bracket")
    truncate(good / "train" / "good" / "001.png")
    with pytest.raises(DataError, match=r"train/good/001.png: unreadable"):
        predict_images(spy, [good], tmp_path / "o")
    make_mvtec_tree(tmp_path / "multi", ("a", "b"), hw=(10, 12))
    with pytest.raises(UserError, match=r"holds folder-dataset categories \(a, b\): predict one category at a time"):
        predict_images(spy, [tmp_path / "multi"], tmp_path / "o")
    with pytest.raises(UserError, match="kind"):
        predict_images(spy, [flat[0]], tmp_path / "o", kind="liquid")
    assert spy.contexts == [] and spy.n_predicted == 0 and not (tmp_path / "o").exists()


def test_non_empty_output_needs_overwrite(tmp_path):
    make_flat(tmp_path / "flat")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="not empty.*--overwrite"):
        predict_images(Spy(), [tmp_path / "flat"], out)
    predict_images(Spy(), [tmp_path / "flat"], out, overwrite=True)
    assert (out / "keep.txt").read_text() == "mine"  # overwrite replaces only predict's own files


class NeedsWeights(Spy):
    name = "needs-weights"

    def required_models(self):
        return [ModelSpec("clipseg", "/nonexistent/clipseg-weights", role="segmenter")]


def test_missing_weights_before_compute(tmp_path):
    make_flat(tmp_path / "flat")
    method = NeedsWeights(runtime=Runtime(profile="default"))
    with pytest.raises(MissingWeightsError, match="/nonexistent/clipseg-weights"):
        predict_images(method, [tmp_path / "flat"], tmp_path / "o")
    assert method.contexts == [] and not (tmp_path / "o").exists()


# --- a tiny-random prompt-based method ---------------------------------------------------------------
@pytest.mark.slow
def test_predict_clipseg_tiny_random(tmp_path):
    pytest.importorskip("zsasbench.methods.clipseg", reason="clipseg adapter not present")
    flat = make_flat(tmp_path / "flat")
    method = create_method("clipseg", runtime=Runtime(profile="tiny-random"))
    report = predict_images(method, [tmp_path / "flat"], tmp_path / "out", object_name="metal bracket")
    check_outputs(report, [flat[0], flat[2], flat[1], flat[3]])
    page = report.html.read_text()
    assert "abnormal" in page and "defect" in page  # the method's prompts are shown
    meta = json.loads((tmp_path / "out" / "method.json").read_text())
    assert meta["runtime"]["profile"] == "tiny-random" and meta["artifacts"]["prompts"] == ["abnormal", "defect"]


# --- CLI ---------------------------------------------------------------------------------------------
def cli_app() -> typer.Typer:
    app = typer.Typer()
    app.command("predict")(predict_command)

    @app.callback()
    def _main():  # a callback keeps `predict` a named sub-command, as in the real app
        pass

    return app


@pytest.fixture(scope="module")
def migrated_db(tmp_path_factory) -> Path:
    """An MLflow SQLite store created once (its migrations take seconds); tests copy it."""
    from zsasbench.tracking import connect

    db = tmp_path_factory.mktemp("mlflow") / "m.db"
    connect(f"sqlite:///{db}", "warmup")
    return db


def test_cli_predict(tmp_path, migrated_db, monkeypatch):
    root = make_tree(tmp_path / "bracket", masks=False)
    out = tmp_path / "out"
    db = tmp_path / "track" / "m.db"
    db.parent.mkdir()
    shutil.copy(migrated_db, db)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    runner = CliRunner()
    res = runner.invoke(cli_app(), ["predict", "--method", "local-contrast", str(root), "--output", str(out),
                                    "--object-name", "metal bracket", "--kind", "texture", "--set", "windows=[3]",
                                    "--seed", "7", "--track", "--tracking-uri", f"sqlite:///{db}"])
    assert res.exit_code == 0, res.output
    assert "browse:" in res.output and str(out / "index.html") in res.output
    meta = json.loads((out / "method.json").read_text())
    assert (meta["config"]["windows"], meta["kind"], meta["seed"], meta["n_references"]) == ([3], "texture", 7, 3)
    assert len(read_csv(out / "scores.csv")) == 8

    import mlflow

    runs = mlflow.search_runs(experiment_names=["zsasbench-predict"], output_format="list")
    assert len(runs) == 1 and runs[0].data.tags["zsasbench.level"] == "predict"
    assert runs[0].data.params["object_name"] == "metal bracket" and runs[0].data.metrics["n_images"] == 8
    arts = {a.path for a in mlflow.MlflowClient().list_artifacts(runs[0].info.run_id, "predict")}
    assert {"predict/index.html", "predict/scores.csv", "predict/overlays"} <= arts

    # errors: one line, exit status 2, nothing written
    res = runner.invoke(cli_app(), ["predict", "--method", "local-contrast", str(tmp_path / "missing"),
                                    "--output", str(tmp_path / "o2")])
    assert res.exit_code == 2 and "error:" in res.output and "missing: no such file or folder" in res.output
    res = runner.invoke(cli_app(), ["predict", "--method", "no-such", str(root), "--output", str(tmp_path / "o3")])
    assert res.exit_code == 2 and "unknown method 'no-such'" in res.output
    res = runner.invoke(cli_app(), ["predict", "--method", "local-contrast", str(root), "-o", str(out)])
    assert res.exit_code == 2 and "not empty" in res.output
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_default_output_is_unique(tmp_path):
    from zsasbench.cli_predict import default_output

    first = default_output("local-contrast", tmp_path)
    assert first.parent == tmp_path and first.name.startswith("local-contrast-")
    first.mkdir()
    assert default_output("local-contrast", tmp_path) != first


# --- `zsasbench run --dataset folder=PATH` through the Runner ------------------------------------------
def run_folder(tmp_path: Path, migrated_db: Path, root: Path):
    from zsasbench.runner import DatasetRef, Runner, RunOptions

    runs = tmp_path / "runs"
    runs.mkdir()
    shutil.copy(migrated_db, runs / "m.db")
    opts = RunOptions(methods=["local-contrast"], datasets=[DatasetRef("folder", root, object_name="metal bracket")],
                      runs_dir=runs, tracking_uri=f"sqlite:///{runs}/m.db")
    return Runner(opts).run()


def test_run_folder_dataset_with_masks(tmp_path, migrated_db):
    summary = run_folder(tmp_path, migrated_db, make_tree(tmp_path / "bracket"))
    assert summary.ok and len(summary.outcomes) == 1
    o = summary.outcomes[0]
    assert (o.dataset, o.category, o.status, o.n_images) == ("folder", "bracket", "ok", 8)
    assert 0 < o.metrics["pixel_ap"] <= 1 and 0 < o.metrics["pixel_f1_max"] <= 1
    assert o.metrics["n_defective_images"] == 6
    means = summary.dataset_means[("local-contrast", "folder")]
    assert means["pixel_ap"] == pytest.approx(o.metrics["pixel_ap"])


def test_run_folder_dataset_without_masks_scores_images_only(tmp_path, migrated_db):
    summary = run_folder(tmp_path, migrated_db, make_tree(tmp_path / "bracket", masks=False))
    o = summary.outcomes[0]
    assert summary.ok and o.status == "ok" and o.n_images == 8
    assert math.isnan(o.metrics["pixel_ap"]) and math.isnan(o.metrics["pixel_f1_max"])  # undefined, not 0
    assert o.metrics["n_positive_pixels"] == 0 and o.metrics["n_defective_images"] == 6  # labels from folders
    assert 0 <= o.metrics["image_auroc"] <= 1 and not math.isnan(o.metrics["image_ap"])
    means = summary.dataset_means[("local-contrast", "folder")]
    assert "pixel_ap" not in means and "image_auroc" in means


def test_run_on_unlabelled_folder_is_refused_before_compute(tmp_path, migrated_db):
    from zsasbench.errors import UserError

    flat = tmp_path / "shots"
    flat.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 24, 3), 40 * i, np.uint8)).save(flat / f"{i}.png")
    with pytest.raises(UserError, match="no label.*zsasbench predict"):
        run_folder(tmp_path, migrated_db, flat)
    assert not (tmp_path / "runs" / "cache").exists()


def test_masks_beside_their_images_are_not_inputs(tmp_path, mtd_sample):
    """The MTD release keeps <name>.jpg and its mask <name>.png side by side: only the .jpg is an image."""
    from zsasbench.predict import walk_images

    found = walk_images(mtd_sample / "MT_Crack" / "Imgs")
    assert found and all(p.suffix == ".jpg" for p in found)
    assert len(found) == len(list((mtd_sample / "MT_Crack" / "Imgs").glob("*.jpg")))
