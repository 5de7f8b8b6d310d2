# The two commands of the README: `make run` and `make test`. Everything else is their plumbing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
# Local use generates and keeps a SECRET_KEY under var/ (production sets SECRET_KEY itself).
export ADRENAL_LOCAL_SECRET ?= 1

.PHONY: run test venv system-deps fixtures demo-data check-compose bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	# torch first, pinned: the pair on local disk (another version downloads gigabytes)
	$(PY) -m pip install -q torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -q -e '.[test]'
	touch $@

venv: $(VENV)/.installed

system-deps:
	@bash scripts/ensure_system_deps.sh

fixtures: venv
	$(PY) scripts/fetch_fixtures.py

run: venv
	$(PY) scripts/run_dev.py

test: venv system-deps fixtures
	ADRENAL_DATA_DIR=$(CURDIR)/var/test $(PY) -m pytest $(PYTEST_ARGS)

check-compose:  # the compose file has no default secrets: validate it with placeholders
	POSTGRES_PASSWORD=$${POSTGRES_PASSWORD:-check} SECRET_KEY=$${SECRET_KEY:-check} docker-compose -f docker/compose.yml config -q

bench: venv fixtures
	for b in benchmarks/bench_*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

clean:
	rm -rf var/test var/broker
