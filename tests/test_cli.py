"""The command line: clear one-line errors before any compute, listings, and the leaderboard formats."""
from __future__ import annotations

import json

import pytest

from helpers_cli import run_cli


@pytest.mark.parametrize("args, expected", [
    (["run", "--dataset", "nosuch"], "unknown dataset 'nosuch'; valid: mvtec"),
    (["run", "--dataset", "mvtec", "--data-root", "nowhere"], "dataset 'mvtec' not found: looked in nowhere/mvtec"),
    (["run", "--dataset", "mtd=/no/such/dir"], "folder /no/such/dir does not exist"),
    (["run", "--eval-size", "big"], "--eval-size 'big'"),
    (["run", "--set", "nofield=1"], "no selected method has a config field 'nofield'"),
    (["run", "--models", "huge"], "unknown models profile 'huge'"),
    (["run", "--tracking-uri", "http://127.0.0.1:9/"], "is not reachable"),
])
def test_bad_input_is_one_clear_line(tmp_path, args, expected):
    out = run_cli(*args, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert expected in out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "runs" / "cache").exists()  # nothing was computed


def test_default_run_then_leaderboard_formats(tmp_path):
    out = run_cli("run", "--limit", "6", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "| Synthetic | AP |" in out.stdout and "partial run" in out.stdout  # this run's own table, marked
    empty = run_cli("leaderboard", cwd=tmp_path)  # partial runs stay off the leaderboard
    assert empty.returncode == 1 and "no complete finished runs" in empty.stderr
    for fmt, marker in (("md", "**"), ("csv", "dataset,metric,Random\u2021,LocalContrast\u2021"),
                        ("latex", r"\textbf{"), ("html", "<b>")):
        board = run_cli("leaderboard", "--format", fmt, "--include-partial", cwd=tmp_path)
        assert board.returncode == 0, board.stderr
        assert marker in board.stdout, fmt
    target = tmp_path / "board.html"
    assert run_cli("leaderboard", "--format", "html", "--output", str(target), "--include-partial",
                   cwd=tmp_path).returncode == 0
    assert "<table>" in target.read_text() and "partial run" in target.read_text()
    per_cat = run_cli("leaderboard", "--per-category", "--format", "csv", "--include-partial", cwd=tmp_path)
    assert "Synthetic / fabric" in per_cat.stdout


def test_listings_as_json(tmp_path):
    methods = json.loads(run_cli("methods", "--json", cwd=tmp_path).stdout)
    by_name = {m["name"]: m for m in methods}
    assert by_name["random"]["ready"] and by_name["random"]["models"] == []
    datasets = json.loads(run_cli("datasets", "--json", cwd=tmp_path).stdout)
    names = [d["name"] for d in datasets]
    assert names[:7] == ["mvtec", "mpdd", "btad", "ksdd", "mtd", "dtd-synthetic", "dagm"]
    assert {d["name"]: d["kind"] for d in datasets}["mtd"] == "texture"
