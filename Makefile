# Two entry points on a fresh machine with Python 3.11 and make:
#   make run    set up .venv from the lockfile and run the whole pipeline (kedro run)
#   make test   set up .venv from the lockfile and run lint + the whole test suite
PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv

export KEDRO_DISABLE_TELEMETRY := true
export UV_PYTHON_DOWNLOADS := never
# XGBoost/OpenMP threads spin while waiting; on a busy 2-core machine that costs 100x in training.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install run test lint format viz benchmarks lock clean

# uv itself is bootstrapped from PyPI into a private venv, so nothing global is touched.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --python $(PYTHON)

run: install
	$(VENV)/bin/kedro run

test: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/pytest

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

viz: install
	$(VENV)/bin/kedro viz run --no-browser

benchmarks: install
	$(VENV)/bin/python benchmarks/cross_validation.py
	$(VENV)/bin/python benchmarks/kedro_run_timing.py

# Re-resolve the lockfile after editing pyproject.toml dependencies.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf $(VENV) $(TOOLS) .pytest_cache .ruff_cache
