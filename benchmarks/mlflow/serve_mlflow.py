"""Builds the MLflow pyfunc of the project's model, and measures its in-process predict rate.

Runs in the benchmark's own MLflow environment (``.venv-mlflow``, from ``requirements.txt`` beside
this file; ``make benchmark-endpoint`` sets it up), never in the product's ``.venv``:

- ``build --model-dir DIR --output DIR``: saves a pyfunc (:mod:`pyfunc_model`, models from
  code) whose artifact is ``DIR``, an extracted ``model.tar.gz`` (``xgboost-model``,
  ``model_spec.json``), and whose ``code_paths`` hold the project's
  ``src/predictive_maintenance``; the signature names the six readings (``type`` a string, the
  others doubles);
- ``rate --model DIR [--seconds S]``: loads the pyfunc as ``mlflow models serve`` does and prints,
  as JSON, how many one-row ``predict`` calls per second it makes (MLflow's in-process limit) and
  MLflow's version.

``benchmarks/endpoint_throughput.py --mlflow`` calls both, then serves the pyfunc with
``mlflow models serve --env-manager local``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROJECT_ROOT = HERE.parents[1]
PACKAGE_SOURCE = PROJECT_ROOT / "src" / "predictive_maintenance"
#: The six readings, in the order of ``predictive_maintenance.schema.READING_COLUMNS``.
READING_TYPES = {
    "type": "string",
    "air_temperature_k": "double",
    "process_temperature_k": "double",
    "rotational_speed_rpm": "double",
    "torque_nm": "double",
    "tool_wear_min": "double",
}
SINGLE_ROW = ["L", 298.4, 308.2, 1582.0, 70.7, 216.0]


def build(model_dir: Path, output: Path) -> None:
    import mlflow  # noqa: PLC0415
    from mlflow.models import ModelSignature  # noqa: PLC0415
    from mlflow.types import ColSpec, Schema  # noqa: PLC0415

    # Saving runs the model file once; the package must be importable then too.
    sys.path.insert(0, str(PACKAGE_SOURCE.parent))
    from predictive_maintenance.schema import READING_COLUMNS  # noqa: PLC0415

    if list(READING_TYPES) != list(READING_COLUMNS):
        raise SystemExit(f"READING_TYPES {list(READING_TYPES)} != {list(READING_COLUMNS)}")
    signature = ModelSignature(
        inputs=Schema([ColSpec(kind, name) for name, kind in READING_TYPES.items()])
    )
    mlflow.pyfunc.save_model(
        path=str(output),
        python_model=str(HERE / "pyfunc_model.py"),
        artifacts={"model_dir": str(model_dir)},
        code_paths=[str(PACKAGE_SOURCE)],
        signature=signature,
        pip_requirements=str(HERE / "requirements.txt"),
    )
    print(f"saved the pyfunc to {output}", flush=True)


def rate(model: Path, seconds: float) -> None:
    import mlflow  # noqa: PLC0415
    import pandas as pd  # noqa: PLC0415

    pyfunc = mlflow.pyfunc.load_model(str(model))
    frame = pd.DataFrame([SINGLE_ROW], columns=list(READING_TYPES))
    pyfunc.predict(frame)
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        for _ in range(20):
            pyfunc.predict(frame)
        count += 20
    facts = {
        "mlflow_version": mlflow.__version__,
        "pyfunc_predict_per_second": round(count / elapsed, 1),
    }
    print(json.dumps(facts), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build_parser = commands.add_parser("build", help="save the pyfunc")
    build_parser.add_argument("--model-dir", type=Path, required=True)
    build_parser.add_argument("--output", type=Path, required=True)
    rate_parser = commands.add_parser("rate", help="one-row predict calls per second")
    rate_parser.add_argument("--model", type=Path, required=True)
    rate_parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    if args.command == "build":
        build(args.model_dir.resolve(), args.output.resolve())
    else:
        rate(args.model.resolve(), args.seconds)


if __name__ == "__main__":
    main()
