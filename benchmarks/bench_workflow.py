"""Workflow scale: dry-run time of a 10,000-point study, and the default study's wall time.

    python benchmarks/bench_workflow.py dry-run        # 10^4 points (10 x 10 x 10 x 10 grid)
    python benchmarks/bench_workflow.py default        # the whole default config.yaml, 2 cores

Both run the real Snakefile in a temporary directory.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]

LARGE_STUDY = {
    "results": "results",
    "studies": {
        "ten_thousand": {
            "base": {"data": {"N": 100, "P_over_N": 2.0}, "run": {"replicas": 4}},
            "grid": {
                "optimizer.b": [round(0.1 * k, 2) for k in range(1, 11)],
                "optimizer.lr": [0.01 * k for k in range(1, 11)],
                "data.seed": list(range(10)),
                "run.seed": list(range(10)),
            },
            "analyses": ["training_curves"],
        }
    },
}


def snakemake(workdir: Path, *arguments: str) -> float:
    env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(workdir),
            *arguments,
        ],
        check=True,
        env=env,
        cwd=workdir,
        stdout=subprocess.DEVNULL,
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=["dry-run", "default"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        if args.what == "dry-run":
            config = workdir / "large.yaml"
            config.write_text(yaml.safe_dump(LARGE_STUDY))
            seconds = snakemake(
                workdir, "-n", "--quiet", "all", "--cores", "1", "--configfile", str(config)
            )
            print(f"dry run of a 10,000-point study: {seconds:.1f} s (target < 60 s)")
        else:
            seconds = snakemake(workdir, "--cores", "2", "--configfile", str(REPO / "config.yaml"))
            print(f"default study, 2 cores: {seconds / 60:.1f} min (target < 20 min)")


if __name__ == "__main__":
    main()
