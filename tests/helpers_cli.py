"""Helpers for tests that run the real `zsasbench` command in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PLUGIN_SRC = Path(__file__).resolve().parent / "plugin_src"


def install_demo_plugin(site: Path) -> Path:
    """Make `zsas_demo_plugin` importable with an entry point, as `pip install` would (dist-info)."""
    import shutil

    site.mkdir(parents=True, exist_ok=True)
    shutil.copytree(PLUGIN_SRC / "zsas_demo_plugin", site / "zsas_demo_plugin", dirs_exist_ok=True)
    info = site / "zsas_demo_plugin-0.1.dist-info"
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zsas-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[zsasbench.methods]\ncounting = zsas_demo_plugin:CountingMethod\n")
    return site


def cli_env(site: Path | None = None, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env.pop("MLFLOW_TRACKING_URI", None)
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join([str(site), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def zsasbench_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "zsasbench", *args]


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(zsasbench_cmd(*args), cwd=cwd, env=env or cli_env(), capture_output=True, text=True,
                          timeout=timeout)
