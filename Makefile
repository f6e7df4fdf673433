# Two entry points on a fresh machine with Python 3.11 and make:
#   make run    set up .venv from the lockfile and run the whole pipeline (kedro run)
#   make test   set up .venv from the lockfile and run lint + the whole test suite
# Benchmarks: `make benchmarks` (cross-validation, kedro run timing, SageMakerRunner and API
# overhead, SageMaker export: compile and run-local on the image stand-in); `make benchmark-endpoint`
# serves the trained model with the local endpoint and with MLflow 3's `mlflow models serve` and
# compares them (MLflow is served from its own .venv-mlflow, pinned in benchmarks/mlflow).
PYTHON ?= python3.11
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
MLFLOW_VENV := .venv-mlflow
IMAGE_VENV := .venv-image

export KEDRO_DISABLE_TELEMETRY := true
# MLflow 3 reports usage to config.mlflow-telemetry.io unless told not to.
export MLFLOW_DISABLE_TELEMETRY := true
export UV_PYTHON_DOWNLOADS := never
# Installed packages are byte-compiled once, at install: every command starts faster (CI and some
# shells set PYTHONDONTWRITEBYTECODE, so nothing would ever be cached otherwise).
export UV_COMPILE_BYTECODE := 1
# XGBoost/OpenMP threads spin while waiting; on a busy 2-core machine that costs 100x in training.
export OMP_WAIT_POLICY := PASSIVE

.PHONY: install image-env run test lint format viz notebook serve benchmarks benchmark-endpoint benchmark-scale benchmark-capture lock clean

# uv itself is bootstrapped from PyPI into a private venv, so nothing global is touched.
$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

install: $(UV)
	$(UV) sync --frozen --python $(PYTHON)

run: install
	$(VENV)/bin/kedro run

# The stand-in for the stock SageMaker XGBoost image (Python 3.10, the image's pins and its own
# serving/training code): tests run job and endpoint code with it. Needs a Python 3.10 on the
# machine (pyenv, PATH or PYTHON310); without one the tests that need it are skipped (outside CI).
image-env:
	deploy/image/xgboost-image-env $(IMAGE_VENV) || echo "no image stand-in: its tests will be skipped"

test: install image-env
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

# Runs every notebook in notebooks/ headless against the project's catalog; the executed copies,
# with their outputs, go to data/08_reporting/notebooks/ (the stored notebooks stay output-free).
notebook: install
	$(VENV)/bin/python notebooks/execute.py

# The model endpoint (:8080) and the HTTP API with its web client (:3000) together (`kedro serve`):
# prints "ready at http://127.0.0.1:3000 (endpoint http://127.0.0.1:8080)" once the endpoint's
# /ping and the API's /health answer; Ctrl-C stops both; if either stops, so does the other (exit 1).
# The endpoint serves what the deployment pipeline deployed (data/11_endpoints/).
serve: install
	$(VENV)/bin/kedro serve --endpoint-port 8080 --api-port 3000

benchmarks: install
	$(VENV)/bin/python benchmarks/cross_validation.py
	$(VENV)/bin/python benchmarks/kedro_run_timing.py
	$(VENV)/bin/python benchmarks/sagemaker_runner_overhead.py
	$(VENV)/bin/python benchmarks/api_overhead.py
	$(VENV)/bin/python benchmarks/sagemaker_export_timing.py

# Data at scale: generate 10k/100k/1M rows, time and measure data_engineering, training and
# batch scoring in project copies, each stage its own process (benchmarks/scale.py, ~3-4 min).
benchmark-scale: install
	$(VENV)/bin/python benchmarks/scale.py $(BENCHMARK_ARGS)

# The endpoint with data capture off and on, interleaved (benchmarks/endpoint_throughput.py).
benchmark-capture: install
	$(VENV)/bin/python benchmarks/endpoint_throughput.py --data-capture both --concurrency 1 16 --rows 1 100 --duration 3 --repeat 5

# The benchmark's MLflow environment: pip from benchmarks/mlflow/requirements.txt, rebuilt when
# that file changes. The pyfunc brings the project's code itself (code_paths).
$(MLFLOW_VENV)/.installed: benchmarks/mlflow/requirements.txt
	rm -rf $(MLFLOW_VENV)
	$(PYTHON) -m venv $(MLFLOW_VENV)
	$(MLFLOW_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r $<
	touch $@

# Endpoint vs `mlflow models serve`, same model, one run (trains it first if data/06_models is
# empty). Extra arguments: make benchmark-endpoint BENCHMARK_ARGS="--duration 10 --json out.json"
benchmark-endpoint: install $(MLFLOW_VENV)/.installed
	test -f data/06_models/model.ubj || $(VENV)/bin/kedro run
	$(VENV)/bin/python benchmarks/endpoint_throughput.py --mlflow $(MLFLOW_VENV) $(BENCHMARK_ARGS)

# Re-resolve the lockfile after editing pyproject.toml dependencies.
lock: $(UV)
	$(UV) lock --python $(PYTHON)

clean:
	rm -rf $(VENV) $(IMAGE_VENV) $(TOOLS) .pytest_cache .ruff_cache

# The MLflow UI on the project's local tracking store (conf/base/mlflow.yml; every `kedro run`
# logs there): http://127.0.0.1:5000, Ctrl-C stops it. Same as `kedro tracking ui`.
.PHONY: mlflow-ui
mlflow-ui: install
	$(VENV)/bin/kedro tracking ui
