"""Run the real Snakefile in a scratch directory: the one helper of tests and benchmarks.

Standard library only (the benchmarks import it without pytest). Snakemake runs as
``python -m snakemake`` of this interpreter (the rules reach the package through the
interpreter that runs Snakemake: nothing is put on PATH), in its own process group, so
that killing the group kills Snakemake and every job it started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def snakemake_command(workdir: Path, *arguments: str) -> list[str]:
    """The command line running the project's Snakefile in ``workdir``."""
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        *arguments,
    ]


def start_snakemake(workdir: Path, *arguments: str, **popen) -> subprocess.Popen:
    """Snakemake started in ``workdir`` as the leader of a new process group."""
    return subprocess.Popen(
        snakemake_command(workdir, *arguments),
        cwd=workdir,
        start_new_session=True,
        **popen,
    )


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL Snakemake and every job of its process group, and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def snakemake(
    workdir: Path, *arguments: str, check: bool = True, timeout: float | None = None
) -> subprocess.CompletedProcess:
    """Run Snakemake to its end and return its captured output.

    ``check``: raise AssertionError with the end of its output when it fails.
    ``timeout``: seconds after which the whole process group is killed (TimeoutExpired);
    an interrupted caller (Ctrl-C) kills it too.
    """
    process = start_snakemake(
        workdir, *arguments, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        kill_group(process)
        raise
    result = subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr)
    if check and result.returncode != 0:
        raise AssertionError(f"snakemake failed:\n{stdout[-5000:]}\n{stderr[-5000:]}")
    return result
