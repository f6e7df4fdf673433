"""Capture files for the monitoring tests, written in SageMaker's data-capture record format
(independently of the endpoint's capture code, which has its own tests)."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from predictive_maintenance.schema import READING_COLUMNS

START = datetime(2026, 12, 3, 14, 0, tzinfo=timezone.utc)
ENCODINGS = {"text/csv": "CSV", "application/json": "JSON"}


def record(
    body: str | bytes,
    answer: str | None,
    *,
    content_type: str = "text/csv",
    answer_type: str = "text/csv; charset=utf-8",
    event_id: str | None = None,
    time: datetime = START,
) -> dict[str, Any]:
    """One capture record; a body of another content type goes as BASE64, as SageMaker does."""
    encoding = ENCODINGS.get(content_type.split(";", maxsplit=1)[0], "BASE64")
    if encoding == "BASE64":
        data = base64.b64encode(body if isinstance(body, bytes) else body.encode()).decode()
    else:
        data = body if isinstance(body, str) else body.decode()
    capture: dict[str, Any] = {
        "endpointInput": {
            "observedContentType": content_type,
            "mode": "INPUT",
            "data": data,
            "encoding": encoding,
        }
    }
    if answer is not None:
        capture["endpointOutput"] = {
            "observedContentType": answer_type,
            "mode": "OUTPUT",
            "data": answer,
            "encoding": ENCODINGS.get(answer_type.split(";", maxsplit=1)[0], "BASE64"),
        }
    return {
        "captureData": capture,
        "eventMetadata": {
            "eventId": event_id or str(uuid.uuid4()),
            "inferenceTime": time.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        },
        "eventVersion": "0",
    }


def csv_row(reading: pd.Series) -> str:
    numbers = ",".join(f"{reading[column]:g}" for column in READING_COLUMNS[1:])
    return f"{reading['type']},{numbers}"


def traffic(readings: pd.DataFrame, *, seed: int = 0) -> list[dict[str, Any]]:
    """One record per reading, one second apart, CSV and JSON requests alternating; the answer
    a made-up score, high for a reading with ``machine_failure`` 1."""
    rng = np.random.default_rng(seed)
    records = []
    for index, (_, reading) in enumerate(readings.iterrows()):
        # A failed machine (when the frame says) scores high, as a good model would.
        failed = bool(reading.get("machine_failure", 0))
        score = float(rng.uniform(0.6, 1.0) if failed else rng.uniform(0.0, 0.2))
        time = START + timedelta(seconds=index)
        if index % 2:
            instance = {
                c: (reading[c] if c == "type" else float(reading[c])) for c in READING_COLUMNS
            }
            body = json.dumps({"instances": [instance]})
            label = int(score >= 0.5)
            answer = json.dumps({"predictions": [{"score": score, "predicted_label": label}]})
            records.append(
                record(
                    body,
                    answer,
                    content_type="application/json",
                    answer_type="application/json",
                    time=time,
                )
            )
        else:
            records.append(record(csv_row(reading), f"{score}\n", time=time))
    return records


def write_capture(
    directory: Path, endpoint: str, records: Iterable[dict[str, Any] | str]
) -> list[Path]:
    """Writes records into SageMaker's layout, one file per UTC hour named after its first
    record; a str is written as it is (a malformed line) into the current file."""
    by_file: dict[Path, list[str]] = {}
    path = None
    for item in records:
        if isinstance(item, dict):
            time = datetime.fromisoformat(
                item["eventMetadata"]["inferenceTime"].replace("Z", "+00:00")
            )
            folder = directory / endpoint / "AllTraffic" / time.strftime("%Y/%m/%d/%H")
            if path is None or path.parent != folder:
                path = folder / f"{time:%M-%S}-{time.microsecond // 1000:03d}-{uuid.uuid4()}.jsonl"
        if path is None:
            raise ValueError("the first item must be a record (it names the file)")
        by_file.setdefault(path, []).append(item if isinstance(item, str) else json.dumps(item))
    for file, lines in by_file.items():
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text("\n".join(lines) + "\n")
    return list(by_file)


def shifted(
    readings: pd.DataFrame, *, seed: int, torque: float = 1.2, share_h: float = 0.5
) -> pd.DataFrame:
    """The simulated shift: torque up by ``torque`` (20 %) and a ``share_h`` of type H."""
    rng = np.random.default_rng(seed)
    out = readings.copy()
    out["torque_nm"] = (out["torque_nm"] * torque).round(1)
    out.loc[rng.random(len(out)) < share_h, "type"] = "H"
    return out
