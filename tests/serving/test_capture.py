"""Endpoint data capture: SageMaker's record and layout, rotation, bounds, sampling, and that
capture never slows down, changes or fails a request (full queue, unwritable disk)."""

from __future__ import annotations

import base64
import http.client
import json
import logging
import os
import random
import re
import subprocess
import threading
import time
from calendar import timegm
from pathlib import Path
from types import SimpleNamespace

import click
import pytest
from click.testing import CliRunner
from kedro.config import OmegaConfigLoader

from predictive_maintenance.serving.capture import (
    CaptureConfig,
    DataCapture,
    capture_file,
    capture_line,
)
from predictive_maintenance.serving.cli import capture_config, endpoint
from predictive_maintenance.serving.contract import CAPTURE_STATS_PATH, EVENT_ID_HEADER
from predictive_maintenance.serving.server import EndpointServer, _route
from tests.serving.conftest import CSV_ROW, ENDPOINT_NAME, serve_command
from tests.support.net import free_port, wait_for
from tests.support.project import PROJECT_ROOT

#: 2026-12-03 15:59:59.250 UTC, a quarter second before an hour ends.
BEFORE_THE_HOUR = timegm((2026, 12, 3, 15, 59, 59)) + 0.25
JSON_BODY = json.dumps(
    {
        "instances": [
            {
                "type": "M",
                "air_temperature_k": 298.1,
                "process_temperature_k": 308.6,
                "rotational_speed_rpm": 1551,
                "torque_nm": 42.8,
                "tool_wear_min": 0,
            }
        ]
    }
).encode()
LAYOUT = re.compile(
    r"(?P<endpoint>[^/]+)/AllTraffic/(?P<hour>\d{4}/\d{2}/\d{2}/\d{2})/"
    r"\d{2}-\d{2}-\d{3}-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}\.jsonl"
)


class Clock:
    """A settable clock for record times, ``step`` seconds later at each reading."""

    def __init__(self, now: float, step: float = 0.0) -> None:
        self.now = now
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now - self.step


def captured(directory: Path) -> dict[str, list[dict]]:
    """Every capture file under ``directory`` (relative path -> its records), oldest first."""
    files = sorted(
        (
            path
            for path in directory.rglob("*.jsonl")
            if LAYOUT.fullmatch(path.relative_to(directory).as_posix())
        ),
        key=lambda path: path.parts[-5:],
    )
    return {
        path.relative_to(directory).as_posix(): [
            json.loads(line) for line in path.read_text().splitlines()
        ]
        for path in files
    }


def offer(capture: DataCapture, body: bytes = CSV_ROW.encode(), answer: bytes = b"0.5\n"):
    return capture.capture(ENDPOINT_NAME, body, "text/csv", answer, "text/csv")


def config(directory: Path, **values) -> CaptureConfig:
    return CaptureConfig(enabled=True, directory=directory, **values)


# ---- the record and the layout -------------------------------------------------------------------
def test_a_record_is_sagemakers_with_the_exact_bodies():
    line = capture_line(
        "3f7c0d1e-0000-4000-8000-000000000001",
        BEFORE_THE_HOUR,
        request_body=b"L,298.1,308.6,1551,42.8,0\r\nH,300,310,1500,40,5",
        request_content_type="text/csv; charset=utf-8",
        response_body=b'{"predictions": []}',
        response_content_type="application/json",
    )

    assert line == (
        '{"captureData":{"endpointInput":{"observedContentType":"text/csv; charset=utf-8",'
        '"mode":"INPUT","data":"L,298.1,308.6,1551,42.8,0\\r\\nH,300,310,1500,40,5",'
        '"encoding":"CSV"},"endpointOutput":{"observedContentType":"application/json",'
        '"mode":"OUTPUT","data":"{\\"predictions\\": []}","encoding":"JSON"}},'
        '"eventMetadata":{"eventId":"3f7c0d1e-0000-4000-8000-000000000001",'
        '"inferenceTime":"2026-12-03T15:59:59Z"},"eventVersion":"0"}\n'
    )
    assert json.loads(line)["captureData"]["endpointInput"]["data"].encode() == (
        b"L,298.1,308.6,1551,42.8,0\r\nH,300,310,1500,40,5"
    )


@pytest.mark.parametrize(
    ("body", "content_type"),
    [(b"\x00\xff binary", "application/octet-stream"), (b"L,\xff,1", "text/csv")],
    ids=["other type", "csv that is not utf-8"],
)
def test_other_bodies_are_base64(body, content_type):
    line = capture_line(
        "id",
        0.0,
        request_body=body,
        request_content_type=content_type,
        response_body=b"",
        response_content_type=None,
    )
    payload = json.loads(line)["captureData"]["endpointInput"]

    assert payload["encoding"] == "BASE64"
    assert base64.b64decode(payload["data"]) == body
    assert payload["observedContentType"] == content_type


def test_files_follow_sagemakers_layout_and_rotate_every_utc_hour(tmp_path):
    clock = Clock(BEFORE_THE_HOUR)
    capture = DataCapture(config(tmp_path), clock=clock)
    first = offer(capture)
    clock.now += 1.5  # 16:00:00.750
    second = offer(capture)
    capture.close()

    files = captured(tmp_path)
    layouts = [LAYOUT.fullmatch(name) for name in files]
    assert [(match["endpoint"], match["hour"]) for match in layouts] == [
        (ENDPOINT_NAME, "2026/12/03/15"),
        (ENDPOINT_NAME, "2026/12/03/16"),
    ]
    assert [name.rsplit("/", 1)[1][:10] for name in files] == ["59-59-250-", "00-00-750-"]
    assert [records[0]["eventMetadata"]["eventId"] for records in files.values()] == [
        first,
        second,
    ]
    assert [records[0]["eventMetadata"]["inferenceTime"] for records in files.values()] == [
        "2026-12-03T15:59:59Z",
        "2026-12-03T16:00:00Z",
    ]


def test_a_file_is_rotated_before_it_passes_max_file_bytes(tmp_path):
    line_bytes = len(
        capture_line(
            "x" * 36,  # as long as a uuid
            0.0,
            request_body=CSV_ROW.encode(),
            request_content_type="text/csv",
            response_body=b"0.5\n",
            response_content_type="text/csv",
        )
    )
    capture = DataCapture(
        config(tmp_path, max_file_bytes=3 * line_bytes),
        clock=Clock(BEFORE_THE_HOUR - 60, step=0.001),
    )
    ids = [offer(capture) for _ in range(7)]
    capture.close()

    files = captured(tmp_path)
    assert [len(records) for records in files.values()] == [3, 3, 1]
    assert all(path.stat().st_size <= 3 * line_bytes for path in tmp_path.rglob("*.jsonl"))
    assert [r["eventMetadata"]["eventId"] for rs in files.values() for r in rs] == ids
    assert capture.stats()["files_created"] == 3


def test_the_oldest_files_are_deleted_past_the_bounds_and_counted(tmp_path):
    """Files of an earlier run count; files not named as capture names them are never touched."""
    old = capture_file(tmp_path, ENDPOINT_NAME, BEFORE_THE_HOUR - 86_400)
    old.parent.mkdir(parents=True)
    old.write_text("{}\n" * 10)
    foreign = tmp_path / ENDPOINT_NAME / "AllTraffic" / "notes.jsonl"
    foreign.write_text("mine\n")
    clock = Clock(BEFORE_THE_HOUR - 3600 * 5)
    capture = DataCapture(config(tmp_path, max_file_bytes=600, max_files=3), clock=clock)
    for _ in range(5):  # five hours, a file each
        offer(capture)
        clock.now += 3600
    capture.close()

    remaining = list(captured(tmp_path))
    assert [LAYOUT.fullmatch(name)["hour"][-2:] for name in remaining] == ["12", "13", "14"]
    assert not old.parent.exists()  # its emptied hour folders went with it
    assert foreign.read_text() == "mine\n"
    stats = capture.stats()
    assert stats["files_deleted"] == 3
    assert stats["bytes_deleted"] > len("{}\n" * 10)
    assert stats["written"] == 5


def test_sampling_captures_that_share_of_requests(tmp_path):
    draws = random.Random(14)
    capture = DataCapture(config(tmp_path, sampling_percentage=30), sample=draws.random)
    ids = [offer(capture) for _ in range(2000)]
    capture.close()

    kept = [event_id for event_id in ids if event_id is not None]
    assert 540 <= len(kept) <= 660  # 30 % of 2000, about 2.6 standard deviations either way
    stats = capture.stats()
    assert (stats["captured"], stats["sampled_out"]) == (len(kept), 2000 - len(kept))
    assert {r["eventMetadata"]["eventId"] for rs in captured(tmp_path).values() for r in rs} == set(
        kept
    )

    nothing = DataCapture(config(tmp_path / "none", sampling_percentage=0))
    assert [offer(nothing) for _ in range(50)] == [None] * 50
    nothing.close()
    assert not (tmp_path / "none").exists()


# ---- capture never holds up a request ---------------------------------------------------------
#: The bodies of the records :func:`offer` makes, in bytes.
OFFERED_BYTES = len(CSV_ROW) + len(b"0.5\n")


@pytest.mark.parametrize(
    "bound",
    [{"queue_records": 2}, {"queue_bytes": 3 * OFFERED_BYTES - 1}],
    ids=["records", "bytes"],
)
def test_a_full_queue_drops_records_and_counts_them(tmp_path, caplog, bound):
    entered, release = threading.Event(), threading.Event()

    def slow_disk(path: Path):
        entered.set()
        release.wait(10)
        return path.open("xb")

    capture = DataCapture(config(tmp_path, **bound), opener=slow_disk)
    first = offer(capture)
    assert entered.wait(10)  # the writer holds the first record and waits for the disk
    started = time.perf_counter()
    later = [offer(capture) for _ in range(4)]
    offered_in = time.perf_counter() - started
    release.set()
    capture.close()

    assert first is not None
    assert None not in later[:2]
    assert later[2:] == [None, None]
    assert offered_in < 0.1  # nobody waited for the disk
    stats = capture.stats()
    assert (stats["captured"], stats["dropped_queue_full"], stats["written"]) == (3, 2, 3)
    assert [r.getMessage() for r in caplog.records].count(
        f"data capture: the writer is 2 records ({2 * OFFERED_BYTES} bytes) behind; dropping "
        "records until it catches up (counted: dropped_queue_full at GET /capture-stats)"
    ) == 1


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_a_full_disk_is_counted_logged_once_and_survived(tmp_path, caplog):
    """/dev/full answers every write with ENOSPC, as a full disk does; when the disk has room
    again, capture goes on in a new file."""
    disk_full = threading.Event()
    disk_full.set()

    def disk(path: Path):
        return open("/dev/full", "wb") if disk_full.is_set() else path.open("xb")

    capture = DataCapture(config(tmp_path), opener=disk)
    for lost in range(1, 4):  # one at a time: each one a file, a write and an error
        offer(capture)
        _wait_until(lambda lost=lost: capture.stats()["records_lost_to_write_errors"] == lost)
    disk_full.clear()
    written = offer(capture)
    capture.close()

    stats = capture.stats()
    assert stats["write_errors"] == {"ENOSPC": 3}
    assert (stats["records_lost_to_write_errors"], stats["written"]) == (3, 1)
    [records] = captured(tmp_path).values()
    assert [r["eventMetadata"]["eventId"] for r in records] == [written]
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "No space left on device" in errors[0].getMessage()


def test_a_directory_that_cannot_be_made_is_counted(tmp_path, caplog):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    capture = DataCapture(config(blocker / "captures"))
    for _ in range(3):
        offer(capture)
    capture.close()

    stats = capture.stats()
    assert stats["records_lost_to_write_errors"] == 3
    assert sum(stats["write_errors"].values()) == 3
    assert set(stats["write_errors"]) <= {"ENOTDIR", "EEXIST"}
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1
    assert "3 lost to write errors" in capture.summary()


def _wait_until(condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


# ---- the endpoint -------------------------------------------------------------------------------
def _post(port: int, path: str, body: bytes, **headers: str) -> tuple[int, dict, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    connection.request(
        "POST", path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )
    try:
        response = connection.getresponse()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
    finally:
        connection.close()


def _get_json(port: int, path: str):
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def test_the_endpoint_captures_what_the_client_sent_and_got(tmp_path, loaded_model):
    capture = DataCapture(config(tmp_path))
    with EndpointServer(
        ("127.0.0.1", 0),
        model=loaded_model.with_version(7),
        endpoint_name=ENDPOINT_NAME,
        capture=capture,
    ) as server:
        server.start()
        csv_body = f"{CSV_ROW}\nM,298.1,308.6,1551,42.8,0\n".encode()
        answers = [
            _post(server.port, "/invocations", csv_body, Content_Type="text/csv"),
            _post(
                server.port,
                f"/endpoints/{ENDPOINT_NAME}/invocations",
                JSON_BODY,
                Content_Type="application/json",
                Accept="text/csv",
            ),
            _post(server.port, "/invocations", b"L,1,2", Content_Type="text/csv"),
        ]
        assert [status for status, _, _ in answers] == [200, 200, 400], answers
        _wait_until(lambda: capture.stats()["written"] == 2)
        status, stats = _get_json(server.port, CAPTURE_STATS_PATH)

    assert EVENT_ID_HEADER not in answers[2][1]  # refused requests are not captured
    [records] = captured(tmp_path).values()
    assert [r["eventMetadata"]["eventId"] for r in records] == [
        answers[0][1][EVENT_ID_HEADER],
        answers[1][1][EVENT_ID_HEADER],
    ]
    sent = [
        (csv_body, "text/csv", "CSV", answers[0][2], "text/csv", "CSV"),
        (JSON_BODY, "application/json", "JSON", answers[1][2], "text/csv", "CSV"),
    ]
    for record, (body, body_type, encoding, answer, answer_type, answer_encoding) in zip(
        records, sent, strict=True
    ):
        assert record["captureData"]["endpointInput"] == {
            "observedContentType": body_type,
            "mode": "INPUT",
            "data": body.decode(),
            "encoding": encoding,
        }
        assert record["captureData"]["endpointOutput"] == {
            "observedContentType": answer_type,
            "mode": "OUTPUT",
            "data": answer.decode(),
            "encoding": answer_encoding,
        }
    assert status == 200
    assert (stats["requests"], stats["captured"], stats["written"]) == (2, 2, 2)


def test_a_failing_capture_changes_no_answer(tmp_path, loaded_model):
    """The same requests with capture off, with an unwritable capture directory and with a full
    queue: the same statuses and bodies; only captured answers carry the event id."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    entered, release = threading.Event(), threading.Event()

    def stuck_disk(path: Path):
        entered.set()
        release.wait(10)
        return path.open("xb")

    captures = {
        "off": None,
        "unwritable": DataCapture(config(blocker / "captures")),
        "queue full": DataCapture(config(tmp_path / "q", queue_records=1), opener=stuck_disk),
    }
    answers = {}
    body = f"{CSV_ROW}\n".encode()
    for name, capture in captures.items():
        with EndpointServer(("127.0.0.1", 0), model=loaded_model, capture=capture) as server:
            server.start()
            answers[name] = [_post(server.port, "/invocations", body, Content_Type="text/csv")]
            if name == "queue full":
                assert entered.wait(10)  # the writer holds the first record, the disk is stuck
            answers[name] += [
                _post(server.port, "/invocations", body, Content_Type="text/csv") for _ in range(3)
            ]
            answers[name + " stats"] = _get_json(server.port, CAPTURE_STATS_PATH)[1]
            if name == "queue full":
                release.set()  # the disk is back: the writer finishes before the server closes

    expected = [(status, body) for status, _, body in answers["off"]]
    for name in ("unwritable", "queue full"):
        assert [(status, body) for status, _, body in answers[name]] == expected
    assert answers["off stats"] == {"enabled": False}
    assert all(EVENT_ID_HEADER not in headers for _, headers, _ in answers["off"])
    assert answers["unwritable stats"]["captured"] == 4  # the writer had not failed yet
    unwritable = captures["unwritable"].stats()  # closed: everything was tried
    assert unwritable["records_lost_to_write_errors"] == 4
    assert sum(unwritable["write_errors"].values()) == 4
    with_id = [EVENT_ID_HEADER in headers for _, headers, _ in answers["queue full"]]
    assert with_id == [True, True, False, False]  # one with the writer, one queued, two dropped
    assert answers["queue full stats"]["dropped_queue_full"] == 2


def test_capture_stats_answer_this_machine_only():
    local = {"path": CAPTURE_STATS_PATH, "client": ("127.0.0.1", 50000)}
    remote = {"path": CAPTURE_STATS_PATH, "client": ("10.1.2.3", 50000)}

    assert _route(local) == (CAPTURE_STATS_PATH, None)
    assert _route(remote) == (None, None)  # a 404, as any unknown path


# ---- configuration and the command line ---------------------------------------------------------
def test_capture_is_off_by_default_and_the_options_override_it():
    parameters = OmegaConfigLoader(
        conf_source=str(PROJECT_ROOT / "conf"), base_env="base", default_run_env="base"
    )["parameters"]
    project = SimpleNamespace(project_path=PROJECT_ROOT)

    configured = capture_config(project, parameters)
    overridden = capture_config(
        project, parameters, enabled=True, sampling_percentage=5, directory=Path("elsewhere")
    )

    assert (configured.enabled, configured.sampling_percentage) == (False, 100)
    assert configured.directory == PROJECT_ROOT / "data" / "13_data_capture"
    assert (overridden.enabled, overridden.sampling_percentage) == (True, 5)
    assert overridden.directory == PROJECT_ROOT / "elsewhere"
    assert overridden.max_file_bytes == parameters["data_capture"]["max_file_bytes"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"sampling_percentage": 150}, "data_capture.sampling_percentage must be a whole number"),
        ({"enabled": "yes"}, "data_capture.enabled must be true or false, not 'yes'"),
        ({"max_files": 0}, "data_capture.max_files must be a positive integer, not 0"),
        ({"max_total_bytes": 10, "max_file_bytes": 20}, "max_total_bytes (10) must be at least"),
        ({"rotate": "daily"}, "unknown data_capture key(s) ['rotate']"),
    ],
)
def test_bad_capture_settings_are_named(values, message):
    with pytest.raises(click.ClickException) as raised:
        capture_config(None, {"data_capture": values})

    assert message in raised.value.message


def test_serve_command_captures_and_logs_a_summary_on_the_way_out(tmp_path, model_dir):
    port = free_port()
    process = subprocess.Popen(
        [
            *serve_command(model_dir, port),
            "--endpoint-name",
            "capture-test",
            "--data-capture",
            "--capture-sampling",
            "100",
            "--capture-dir",
            str(tmp_path),
        ],
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "300"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_for(process, lambda: _get_json(port, "/ping")[0] == 200)
        invoked = CliRunner().invoke(
            endpoint, ["invoke", "--url", f"http://127.0.0.1:{port}", CSV_ROW]
        )
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert invoked.exit_code == 0, (invoked.output, output)
    assert process.returncode == 0, output
    [(name, [record])] = captured(tmp_path).items()
    assert LAYOUT.fullmatch(name)["endpoint"] == "capture-test"
    event_id = record["eventMetadata"]["eventId"]
    assert invoked.stderr == f"capture event id {event_id}\n"  # to report ground truth with
    assert record["captureData"]["endpointInput"]["data"] == CSV_ROW + "\n"  # as invoke sent it
    assert record["captureData"]["endpointOutput"]["data"] == invoked.stdout
    text = " ".join(output.split())
    assert f"data capture on: 100% of answered requests to {tmp_path}" in text
    assert "1 requests answered, 1 captured (100% sampled), 1 written to 1 file(s)" in text


def test_a_clients_inference_id_is_captured_and_is_the_ground_truth_key(tmp_path, loaded_model):
    """boto3's InvokeEndpoint(InferenceId=...) reaches the capture as SageMaker records it, and
    the monitoring pipeline joins ground truth on it (AWS never tells the client the eventId)."""
    import boto3  # noqa: PLC0415
    from botocore.config import Config  # noqa: PLC0415

    from predictive_maintenance.pipelines.monitoring.nodes import (  # noqa: PLC0415
        read_captured_data,
    )

    capture = DataCapture(config(tmp_path))
    with EndpointServer(
        ("127.0.0.1", 0), model=loaded_model, endpoint_name=ENDPOINT_NAME, capture=capture
    ) as server:
        server.start()
        runtime = boto3.client(
            "sagemaker-runtime",
            endpoint_url=server.url,
            region_name="eu-west-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            config=Config(retries={"max_attempts": 1}),
        )
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT_NAME,
            Body=CSV_ROW.encode(),
            ContentType="text/csv",
            InferenceId="machine-L47181/2026-12-03T10:00",
        )
        refused = _post(
            server.port,
            "/invocations",
            CSV_ROW.encode(),
            Content_Type="text/csv",
            X_Amzn_SageMaker_Inference_Id="x" * 65,  # SageMaker allows 1-64 characters
        )
        _wait_until(lambda: capture.stats()["written"] == 1)

    [records] = captured(tmp_path).values()
    assert records[0]["eventMetadata"]["inferenceId"] == "machine-L47181/2026-12-03T10:00"
    assert records[0]["eventMetadata"]["eventId"] != "machine-L47181/2026-12-03T10:00"
    assert refused[0] == 400
    assert json.loads(refused[2])["field"] == "X-Amzn-SageMaker-Inference-Id"
    [path] = (tmp_path / ENDPOINT_NAME).rglob("*.jsonl")
    content = path.read_text()
    readings, _ = read_captured_data(
        {f"{ENDPOINT_NAME}/x": lambda: content},
        {"endpoint_name": ENDPOINT_NAME, "capture_directory": str(tmp_path), "window": {}},
    )
    assert readings["event_id"].tolist() == ["machine-L47181/2026-12-03T10:00"]


def test_kedro_serve_passes_the_capture_options_to_its_endpoint():
    from predictive_maintenance.serving.cli import capture_arguments  # noqa: PLC0415

    assert capture_arguments(None, None, None) == []
    assert capture_arguments(True, 10, Path("captures")) == [
        "--data-capture",
        "--capture-sampling",
        "10",
        "--capture-dir",
        "captures",
    ]
    assert capture_arguments(False, None, None) == ["--no-data-capture"]
