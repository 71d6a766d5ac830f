"""Workflow scale: dry-run time of a 10,000-point study, and the default study's wall time.

    python benchmarks/bench_workflow.py dry-run        # 10^4 points (10 x 10 x 10 x 10 grid)
    python benchmarks/bench_workflow.py default        # the whole default config.yaml, 2 cores

Both run the real Snakefile in a temporary directory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the tests' Snakemake runner (standard library only)
from tests.workflow_runner import snakemake  # noqa: E402

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


def timed_snakemake(workdir: Path, *arguments: str) -> float:
    """Wall seconds of a successful Snakemake run in ``workdir``."""
    start = time.perf_counter()
    snakemake(workdir, *arguments)
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
            seconds = timed_snakemake(
                workdir, "-n", "--quiet", "all", "--cores", "1", "--configfile", str(config)
            )
            print(f"dry run of a 10,000-point study: {seconds:.1f} s (target < 60 s)")
        else:
            seconds = timed_snakemake(
                workdir, "--cores", "2", "--configfile", str(REPO / "config.yaml")
            )
            print(f"default study, 2 cores: {seconds / 60:.1f} min (target < 20 min)")


if __name__ == "__main__":
    main()
