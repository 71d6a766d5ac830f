# The two commands of the README. Both install what they need first (idempotent).
#   make study   install, then run the default studies of config.yaml on all cores
#   make test    install (with test tools and a local SLURM), then run the test suite:
#                the fast tests on a developer's machine, every test under CI (CI=true,
#                which CI sets); make test-all runs every test anywhere
# make study CONFIGFILE=my.yaml runs only the studies of my.yaml.
CORES ?= 2
CONFIGFILE ?=
VENV := .venv
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

# the end-to-end tests (marker slow: real workflows, a fresh clone, SLURM) run under CI
TEST_SELECTION := $(if $(filter true,$(CI)),,-m "not slow")

.PHONY: study test test-all install install-test report benchmarks lint

study: install
	snakemake --cores $(CORES) $(if $(CONFIGFILE),--configfile "$(CONFIGFILE)")

test: install-test
	python -m pytest -q $(TEST_SELECTION)

test-all: install-test
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
