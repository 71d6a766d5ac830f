"""Are two source trees' artifacts bit-identical? Train the same points with each, compare.

For a refactoring that must not change behaviour: the first ``--points`` grid points of
each study of a study config are trained (run, and two-time and DMFT artifacts where the
study asks for them) by the sgdnoise of each source tree, through its command line, then
every pair of artifacts is compared with xarray's assert_identical (values, dims,
coordinates, attributes except provenance that must differ: git commit, version, wall
time).

    git archive <old-commit> | tar -x -C /tmp/old
    .venv/bin/python benchmarks/compare_artifacts.py /tmp/old . --out /tmp/compare
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import xarray as xr
import yaml

PROVENANCE = {"git_commit", "wall_seconds", "sgdnoise_version"}


def train(tree: Path, config: dict, studies: list[str], points: int, out: Path) -> None:
    """Artifacts of the first ``points`` points of ``studies`` made by the sgdnoise of ``tree``."""
    environment = {**os.environ, "PYTHONPATH": str(tree / "src")}

    def sgdnoise(*args: str) -> None:
        command = [sys.executable, "-m", "sgdnoise", "--threads", "1", *args]
        subprocess.run(command, check=True, env=environment, stdout=subprocess.DEVNULL)

    for name in studies:
        study, folder = config["studies"][name], out / name
        sgdnoise("grid", name, "--json", json.dumps(study), "--table", str(folder / "grid.tsv"),
                 "--points", str(folder / "points"))  # fmt: skip
        for point in sorted((folder / "points").glob("*.yaml"))[:points]:
            run = folder / f"{point.stem}.run.nc"
            sgdnoise("point", str(point), "--out", str(run), "--quiet")
            if yaml.safe_load(point.read_text())["run"]["response"]["waiting_times"]:
                sgdnoise(
                    "correlation-response", str(run), "--out", str(run).replace("run", "two_time")
                )
            if "dmft" in study.get("analyses", []):
                options = [
                    f"--{key.replace('_', '-')}={value}" for key, value in study["dmft"].items()
                ]
                sgdnoise(
                    "dmft", str(point), "--out", str(folder / f"{point.stem}.dmft.nc"), *options
                )


def compare(old: Path, new: Path) -> int:
    """Print, per artifact, identical or what differs; return the number that differ."""
    differing = 0
    for old_file in sorted(old.rglob("*.nc")):
        relative = old_file.relative_to(old)
        first, second = xr.open_dataset(old_file).load(), xr.open_dataset(new / relative).load()
        try:
            xr.testing.assert_identical(first.drop_attrs(), second.drop_attrs())
            attributes = {
                key
                for key in set(first.attrs) | set(second.attrs)
                if key not in PROVENANCE and str(first.attrs.get(key)) != str(second.attrs.get(key))
            }
            verdict = f"attributes differ: {sorted(attributes)}" if attributes else "identical"
        except AssertionError as error:
            verdict = "DIFFER: " + str(error).splitlines()[0]
        differing += verdict != "identical"
        print(f"{verdict:>10}  {relative}")
    print(f"{differing} of {len(list(old.rglob('*.nc')))} artifacts differ")
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path, help="source tree (holding src/sgdnoise) before")
    parser.add_argument("new", type=Path, help="source tree after")
    parser.add_argument("--config", type=Path, default=Path("config.yaml"))
    parser.add_argument("--studies", help="comma-separated study names (default: all)")
    parser.add_argument("--points", type=int, default=2, help="points per study")
    parser.add_argument("--out", type=Path, default=Path("compare"))
    args = parser.parse_args()
    config = yaml.safe_load(args.config.read_text())
    studies = args.studies.split(",") if args.studies else list(config["studies"])
    for label, tree in (("old", args.old), ("new", args.new)):
        train(tree.resolve(), config, studies, args.points, args.out / label)
    sys.exit(1 if compare(args.out / "old", args.out / "new") else 0)


if __name__ == "__main__":
    main()
