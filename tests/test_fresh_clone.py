"""The README's commands, run as a newcomer runs them: on a fresh clone, as printed,
without an activated environment.

`make study` installs into the clone's own .venv and runs the workflow (here with a tiny
configfile through the same target: `make study CONFIGFILE=...`); then the custom-study
commands of the README run exactly as printed, with PATH holding only the system's
directories. This is what once failed on every fresh clone while the rest of CI was green.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest
import xarray as xr

from tests.workflow_runner import REPO

TINY_STUDY = """\
studies:
  tiny:
    base:
      data: {kind: random_patterns, N: 20, P_over_N: 1.0}
      optimizer: {kind: sgd, b: 0.5}
      run: {replicas: 2, max_time: 1.0, record: {count: 4}}
    grid:
      optimizer.b: [0.5, 1.0]
"""
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def readme_block(language: str, first_line: str) -> str:
    """The README's fenced ``language`` block whose first line starts with ``first_line``."""
    text = (REPO / "README.md").read_text()
    for block in re.findall(rf"```{language}\n(.*?)```", text, flags=re.S):
        if block.startswith(first_line):
            return block
    raise AssertionError(f"README has no ```{language} block starting with {first_line!r}")


def run(command: str, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    """``command`` in a shell as a newcomer types it: no venv on PATH."""
    environment = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    environment["PATH"] = SYSTEM_PATH
    result = subprocess.run(
        command,
        shell=True,
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, (
        f"{command!r} failed ({result.returncode}):\n{result.stdout[-3000:]}\n"
        f"{result.stderr[-3000:]}"
    )
    return result


@pytest.mark.slow
def test_readme_commands_work_on_a_fresh_clone(tmp_path):
    clone = tmp_path / "fresh clone"  # a space in the path, as users' folders have
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    first_block = readme_block("bash", "make study")
    assert first_block.splitlines()[1].startswith("make test")  # the two commands, first

    (clone / "tiny.yaml").write_text(TINY_STUDY)
    run("make study CONFIGFILE=tiny.yaml", clone, timeout=1200)
    with xr.open_dataset(clone / "results" / "tiny" / "summary.nc") as summary:
        assert summary.sizes["b"] == 2

    (clone / "my.yaml").write_text(readme_block("yaml", "# my.yaml"))
    commands = readme_block("bash", ".venv/bin/sgdnoise validate my.yaml")
    for line in commands.splitlines():
        command = line.split("#")[0].strip()
        if command:
            run(command, clone, timeout=900)
    outputs = {p.name for p in (clone / "results").iterdir()}
    assert outputs == {"tiny", "batch_fraction"}  # only the studies asked for
    with xr.open_mfdataset(str(clone / "results" / "batch_fraction" / "runs" / "*.nc")) as runs:
        assert {"b", "seed", "replica", "record"} <= set(runs["train_loss"].dims)
