"""A method registered only through an entry point appears in `zsasbench methods` and runs."""
from __future__ import annotations

import json

from helpers_cli import cli_env, install_demo_plugin, run_cli


def test_entry_point_method_is_listed_and_runs(tmp_path):
    site = install_demo_plugin(tmp_path / "site")
    env = cli_env(site)
    listed = run_cli("methods", "--json", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert "counting" in rows and rows["counting"]["source"].startswith("entry point")
    assert {"random", "local-contrast"} <= set(rows)

    out = run_cli("run", "--method", "counting", "--dataset", "synthetic", "--category", "washer",
                  "--limit", "6", cwd=tmp_path, env=env)
    assert out.returncode == 0, out.stderr
    assert "Counting" in out.stdout  # the leaderboard column


def test_unregistered_method_is_an_error_listing_valid_names(tmp_path):
    out = run_cli("run", "--method", "nope", cwd=tmp_path)
    assert out.returncode == 2
    assert "unknown method 'nope'" in out.stderr and "local-contrast" in out.stderr
    assert "Traceback" not in out.stderr
