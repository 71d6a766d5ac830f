# The two commands of the README. Both install what they need first (idempotent).
#   make study   install, then run the default studies of config.yaml on all cores
#   make test    install (with test tools and a local SLURM), then run the test suite
# make study CONFIGFILE=my.yaml runs only the studies of my.yaml.
CORES ?= 2
CONFIGFILE ?=
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: study test install install-test report benchmarks lint

study: install
	snakemake --cores $(CORES) $(if $(CONFIGFILE),--configfile "$(CONFIGFILE)")

test: install-test
	python -m pytest -q

install:
	scripts/install.sh

install-test:
	scripts/install.sh --test

report: install
	snakemake --cores $(CORES) $(if $(CONFIGFILE),--configfile "$(CONFIGFILE)") --report report.html

benchmarks: install
	for bench in benchmarks/bench_*.py; do python $$bench || exit 1; done

lint: install-test
	ruff check src tests benchmarks
