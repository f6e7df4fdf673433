"""The local endpoint over real HTTP: contract, boto3 sagemaker-runtime, batching, hot swap, CLI."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from click.testing import CliRunner
from kedro.io import DatasetError

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.serving.cli import endpoint
from predictive_maintenance.serving.contract import MAX_PAYLOAD_BYTES
from predictive_maintenance.serving.endpoint import LocalEndpointDataset, write_endpoint_state
from predictive_maintenance.serving.http import DRAIN_FACTOR
from predictive_maintenance.serving.inference import invoke, model_fn
from predictive_maintenance.serving.package import build_model_archive, extract_model_archive
from predictive_maintenance.serving.ports import ListenError, listen
from predictive_maintenance.serving.server import EndpointServer, serve
from tests.conftest import WORKSHOP_READING
from tests.serving.conftest import (
    CSV_ROW,
    ENDPOINT_NAME,
    exchange,
    parse_response,
    read_until_closed,
    readings_as_csv,
    serve_command,
)
from tests.support.net import free_port, wait_for
from tests.support.project import copy_project

JSON_BODY = json.dumps({"instances": [WORKSHOP_READING]})


class Answer:
    def __init__(self, response: http.client.HTTPResponse) -> None:
        self.status = response.status
        self.headers = {name.lower(): value for name, value in response.getheaders()}
        self.body = response.read()

    def json(self):
        assert self.headers["content-type"] == "application/json"
        return json.loads(self.body)


def call(
    target: EndpointServer | http.client.HTTPConnection,
    method: str,
    path: str,
    body: str | bytes | None = None,
    **headers: str,
) -> Answer:
    connection = (
        target
        if isinstance(target, http.client.HTTPConnection)
        else http.client.HTTPConnection("127.0.0.1", target.port, timeout=30)
    )
    connection.request(
        method, path, body=body, headers={k.replace("_", "-"): v for k, v in headers.items()}
    )
    return Answer(connection.getresponse())


def post_csv(target, body: str | bytes = CSV_ROW, path: str = "/invocations", **headers) -> Answer:
    return call(target, "POST", path, body, Content_Type="text/csv", **headers)


def runtime_client(server: EndpointServer):
    return boto3.client(
        "sagemaker-runtime",
        endpoint_url=server.url,
        region_name="eu-west-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
        config=Config(retries={"max_attempts": 1}),
    )


@pytest.fixture(scope="module")
def expected_score(loaded_model) -> bytes:
    return invoke(loaded_model, CSV_ROW, "text/csv", "text/csv")[0]


# ---- the contract, status by status ------------------------------------------------------------
def test_ping_is_200_with_a_model(server):
    answer = call(server, "GET", "/ping")

    assert answer.status == 200
    assert answer.headers["x-model-version"] == "7"
    assert answer.json() == {"status": "ready", "model_version": 7}


def test_head_gets_a_405_without_a_body(server):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    head = call(connection, "HEAD", "/ping")
    after = call(connection, "GET", "/ping")  # the connection is still in step

    assert (head.status, head.body, head.headers["allow"]) == (405, b"", "GET")
    assert after.status == 200


def test_without_a_model_ping_and_invocations_are_503():
    with EndpointServer(("127.0.0.1", 0)) as empty:
        empty.start()
        assert call(empty, "GET", "/ping").status == 503
        answer = post_csv(empty)
        assert answer.status == 503
        assert answer.json()["error"] == "no_model"


def test_csv_in_csv_out(server, expected_score):
    answer = post_csv(server)

    assert answer.status == 200
    assert answer.headers["content-type"] == "text/csv"
    assert answer.headers["x-model-version"] == "7"
    assert answer.body == expected_score
    assert 0 < float(answer.body) < 1


def test_many_csv_rows_get_one_score_per_line(server, training_run):
    readings = training_run.readings.loc[training_run.test.index[:25]]

    answer = post_csv(server, readings_as_csv(readings).replace("\n", "\r\n"))

    assert answer.status == 200
    assert len(answer.body.decode().splitlines()) == 25


def test_json_in_json_out(server, expected_score, loaded_model):
    answer = call(server, "POST", "/invocations", JSON_BODY, Content_Type="application/json")

    assert answer.status == 200
    prediction = answer.json()["predictions"][0]
    assert answer.json()["model_version"] == 7
    assert prediction["score"] == float(expected_score)
    assert prediction["predicted_label"] == int(
        np.float32(expected_score.decode()) >= loaded_model.decision_threshold
    )


def test_accept_picks_the_answer_format(server, expected_score):
    as_json = post_csv(server, Accept="application/json")
    as_csv = call(
        server,
        "POST",
        "/invocations",
        JSON_BODY,
        Content_Type="application/json",
        Accept="text/csv",
    )

    assert as_json.json()["predictions"][0]["score"] == float(expected_score)
    assert as_csv.body == expected_score


def test_invalid_input_is_400_naming_row_and_field(server):
    answer = post_csv(server, f"{CSV_ROW}\nL,298.4,308.2,1582,600,216")

    assert answer.status == 400
    assert answer.headers["x-model-version"] == "7"
    detail = answer.json()
    # Rows are numbered as the file's lines (a spreadsheet's row numbers): the second line is 2.
    assert (detail["error"], detail["row"], detail["field"]) == ("invalid_input", 2, "torque_nm")
    assert "600" in detail["message"]


def test_unknown_paths_are_404(server):
    for method, path in (("GET", "/"), ("POST", "/predict"), ("POST", "/endpoints/x/y")):
        answer = call(server, method, path)
        assert answer.status == 404
        assert answer.json()["error"] == "not_found"


def test_another_endpoint_name_is_404(server):
    answer = post_csv(server, path="/endpoints/some-other-endpoint/invocations")

    assert answer.status == 404
    assert answer.headers["x-amzn-errortype"] == "ValidationError"
    assert "some-other-endpoint" in answer.json()["message"]


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("GET", "/invocations", "POST"),
        ("POST", "/ping", "GET"),
        ("PUT", "/invocations", "POST"),
        ("DELETE", f"/endpoints/{ENDPOINT_NAME}/invocations", "POST"),
    ],
)
def test_wrong_methods_are_405(server, method, path, allowed):
    answer = call(server, method, path)

    assert answer.status == 405
    assert answer.headers["allow"] == allowed


def test_unsupported_accept_is_406(server):
    answer = post_csv(server, Accept="application/x-protobuf")

    assert answer.status == 406
    assert answer.json()["error"] == "not_acceptable"


def test_unsupported_content_type_is_415(server):
    answer = call(server, "POST", "/invocations", CSV_ROW, Content_Type="application/x-npy")

    assert answer.status == 415
    assert answer.json()["error"] == "unsupported_media_type"


def test_above_6_mb_is_413_and_the_connection_stays_usable(server, expected_score):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    body = b"x" * (MAX_PAYLOAD_BYTES + 1)

    too_large = post_csv(connection, body)
    after = post_csv(connection)

    assert too_large.status == 413
    assert too_large.json()["error"] == "payload_too_large"
    assert after.status == 200
    assert after.body == expected_score


def test_413_is_judged_by_content_length_before_reading(server):
    # The server answers and closes: no body was sent, and 1 GB is not worth draining.
    response = parse_response(
        exchange(
            server.port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Content-Length: 1000000000\r\n\r\n",
        )
    )

    assert response.status == 413
    assert response.header("connection") == "close"
    assert response.json()["error"] == "payload_too_large"


def test_a_chunked_body_is_read_and_limited(server, expected_score):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    chunk = b"x" * (1 << 20)

    def chunked(*parts: bytes):
        return call(connection, "POST", "/invocations", iter(parts), Content_Type="text/csv")

    small = chunked(CSV_ROW[:10].encode(), CSV_ROW[10:].encode())
    too_large = chunked(*[chunk] * 7)
    after = chunked(CSV_ROW.encode())

    assert (small.status, small.body) == (200, expected_score)
    assert too_large.status == 413
    assert (after.status, after.body) == (200, expected_score)


def test_a_chunked_body_beyond_what_is_drained_is_413_and_closes(server):
    """A chunk announcing 2 GB, then real bytes: 413 as soon as the body passes the limit, the
    rest dropped up to DRAIN_FACTOR times the limit, then the connection is closed."""
    limit = server.limits.max_body_bytes
    block = b"x" * (1 << 20)
    blocks = (DRAIN_FACTOR + 1) * limit // len(block) + 2
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as raw:

        def flood() -> None:
            try:
                raw.sendall(
                    b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n7FFFFFFF\r\n"
                )
                for _ in range(blocks):
                    raw.sendall(block)
            except OSError:  # the server closed the connection, as it should
                pass

        sender = threading.Thread(target=flood)
        sender.start()
        started = time.monotonic()
        received = read_until_closed(raw)  # returns only once the server has closed
        closed_after = time.monotonic() - started
        sender.join()

    response = parse_response(received)
    assert response.status == 413
    assert response.json()["error"] == "payload_too_large"
    assert response.rest == b""
    assert closed_after < server.limits.body_timeout  # closed by the drain budget, not a timer


@pytest.mark.parametrize("size", [b"zz", b"-5", b"-1", b"0x10", b"1_0"])
def test_a_malformed_chunked_body_is_400(server, size):
    response = parse_response(
        exchange(
            server.port,
            b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n" + size + b"\r\n",
        )
    )

    assert response.status == 400
    assert response.header("connection") == "close"
    assert "chunk size" in response.json()["message"]


def test_errors_keep_the_connection_alive(server, expected_score):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)

    statuses = [
        post_csv(connection, "L,1").status,
        call(connection, "POST", "/invocations", CSV_ROW, Content_Type="text/plain").status,
        call(connection, "GET", "/nowhere").status,
        post_csv(connection).status,
    ]

    assert statuses == [400, 415, 404, 200]


# ---- boto3 sagemaker-runtime, unmodified -------------------------------------------------------
def test_boto3_invoke_endpoint_with_csv(server, expected_score):
    response = runtime_client(server).invoke_endpoint(
        EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body="L,298.4,308.2,1582,70.7,216"
    )

    assert response["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert response["ContentType"] == "text/csv"
    assert response["InvokedProductionVariant"] == "AllTraffic"
    assert response["Body"].read() == expected_score


def test_boto3_invoke_endpoint_with_json(server, expected_score):
    response = runtime_client(server).invoke_endpoint(
        EndpointName=ENDPOINT_NAME,
        ContentType="application/json",
        Accept="application/json",
        Body=JSON_BODY,
    )

    answer = json.loads(response["Body"].read())
    assert response["ContentType"] == "application/json"
    assert answer["predictions"][0]["score"] == float(expected_score)
    assert answer["model_version"] == 7


def test_boto3_sees_invalid_input_as_a_model_error(server):
    client = runtime_client(server)

    with pytest.raises(client.exceptions.ModelError) as raised:
        client.invoke_endpoint(EndpointName=ENDPOINT_NAME, ContentType="text/csv", Body="L,1,2")

    response = raised.value.response
    assert response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert response["OriginalStatusCode"] == 400
    assert "line 1, field rotational_speed_rpm" in response["Error"]["Message"]


def test_boto3_sees_an_unknown_endpoint_as_a_validation_error(server):
    with pytest.raises(ClientError) as raised:
        runtime_client(server).invoke_endpoint(
            EndpointName="no-such-endpoint", ContentType="text/csv", Body=CSV_ROW
        )

    assert raised.value.response["Error"]["Code"] == "ValidationError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


# ---- concurrency -------------------------------------------------------------------------------
def test_concurrent_requests_get_the_scores_they_get_alone(server, loaded_model, training_run):
    rows = readings_as_csv(training_run.readings.iloc[:160]).splitlines()
    expected = {row: invoke(loaded_model, row, "text/csv", None)[0] for row in rows}
    answers: dict[str, list[bytes]] = {}
    failures: list[str] = []

    def client(mine: list[str]) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        for row in mine:
            answer = post_csv(connection, row)
            if answer.status != 200:
                failures.append(f"{answer.status} {answer.body!r}")
            answers.setdefault(row, []).append(answer.body)

    batches_before, requests_before = server.batcher.batches, server.batcher.requests
    threads = [threading.Thread(target=client, args=(rows[i::16],)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert failures == []
    assert {row: bodies[0] for row, bodies in answers.items()} == expected
    # Requests that arrived together were scored together.
    assert server.batcher.requests - requests_before == 160
    assert server.batcher.batches - batches_before < 160


# ---- deployment state and hot swap -------------------------------------------------------------
def _deploy(state_file: Path, archive_path: Path, version: int, sha256: str | None = None) -> None:
    """Writes an endpoint state as any deployer might (relative archive paths for the tmp root)."""
    write_endpoint_state(
        state_file,
        {
            "endpoint_name": ENDPOINT_NAME,
            "model_group": "predictive-maintenance",
            "model_version": version,
            "model_archive": archive_path.name
            if archive_path.parent == state_file.parent.parent
            else str(archive_path),
            "model_archive_sha256": sha256 or sha256_hex(archive_path.read_bytes()),
            "deployed_at": datetime.now(timezone.utc).isoformat(),
        },
    )


def _request(archive_path: Path, version: int | None, **changes) -> dict:
    """A deployment request as the deployment pipeline saves it to the endpoint dataset."""
    return {
        "endpoint_name": ENDPOINT_NAME,
        "model_group": "predictive-maintenance",
        "model_version": version,
        "model_archive": str(archive_path),
        "model_archive_sha256": sha256_hex(archive_path.read_bytes()),
        "reason": "newest Approved version of predictive-maintenance",
        **changes,
    }


@pytest.fixture
def deployment(tmp_path, training_run):
    """Archives of both models on disk, and a state file (not yet written)."""
    full, small = tmp_path / "full.tar.gz", tmp_path / "small.tar.gz"
    full.write_bytes(training_run.full.archive)
    small.write_bytes(training_run.small.archive)
    return {"full": full, "small": small, "state": tmp_path / "endpoints" / "state.json"}


def test_hot_swap_under_load_fails_no_request(deployment, tmp_path, training_run, expected_score):
    _deploy(deployment["state"], deployment["full"], 1)
    with EndpointServer(("127.0.0.1", 0)) as server:
        server.start()
        watcher = server.watch_state(deployment["state"], base_dir=tmp_path, poll_interval=0.05)
        first_dir = watcher._model_dir
        assert server.model.model_version == 1
        assert server.endpoint_name == ENDPOINT_NAME
        stop = threading.Event()
        seen: list[list[tuple[int, str | None, bytes]]] = [[] for _ in range(4)]
        failures: list[str] = []

        def hammer(log: list[tuple[int, str | None, bytes]]) -> None:
            connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            while not stop.is_set():
                try:
                    answer = post_csv(connection)
                except (OSError, http.client.HTTPException) as error:
                    failures.append(repr(error))
                    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
                    continue
                log.append((answer.status, answer.headers.get("x-model-version"), answer.body))

        threads = [threading.Thread(target=hammer, args=(log,)) for log in seen]
        for thread in threads:
            thread.start()
        time.sleep(0.7)
        _deploy(deployment["state"], deployment["small"], 2)
        deadline = time.monotonic() + 15
        while server.model.model_version != 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.7)
        stop.set()
        for thread in threads:
            thread.join()

    assert failures == []
    answers = [answer for log in seen for answer in log]
    assert {status for status, _, _ in answers} == {200}
    assert len(answers) > 50
    for log in seen:  # each client moves from version 1 to version 2, never back
        versions = [version for _, version, _ in log]
        assert versions == sorted(versions)
        assert versions[0] == "1"
        assert versions[-1] == "2"
    bodies = {version: {body for _, v, body in answers if v == version} for version in "12"}
    small = model_fn(extract_model_archive(training_run.small.archive, tmp_path / "small"))
    assert bodies["1"] == {expected_score}
    assert bodies["2"] == {invoke(small, CSV_ROW, "text/csv", None)[0]}
    assert bodies["1"] != bodies["2"]
    assert not first_dir.exists()  # the old model's extracted files are gone


def test_a_state_whose_archive_fails_its_check_is_refused(deployment, tmp_path, caplog):
    _deploy(deployment["state"], deployment["full"], 1)
    with EndpointServer(("127.0.0.1", 0)) as server:
        watcher = server.watch_state(deployment["state"], base_dir=tmp_path, poll_interval=60)
        caplog.set_level("ERROR", logger="predictive_maintenance.serving.server")

        _deploy(deployment["state"], deployment["small"], 2, sha256="0" * 64)
        swapped = watcher.check()

        assert swapped is False
        assert server.model.model_version == 1
        assert "sha256" in watcher.last_error
        assert "still serving version 1" in caplog.text

        deployment["small"].unlink()
        _deploy(deployment["state"], deployment["full"].with_name("small.tar.gz"), 3, "1" * 64)
        assert watcher.check() is False
        assert server.model.model_version == 1
        assert "FileNotFoundError" in watcher.last_error


def _wait_for_ping(server: EndpointServer, status: int, version: str | None = None) -> Answer:
    deadline = time.monotonic() + 10
    while True:
        answer = call(server, "GET", "/ping")
        if (answer.status, answer.headers.get("x-model-version")) == (status, version):
            return answer
        assert time.monotonic() < deadline, f"/ping still {answer.status} {answer.body!r}"
        time.sleep(0.02)


@pytest.mark.parametrize("serving_before", [False, True], ids=["no-model", "old-model"])
def test_a_restored_archive_is_served_without_touching_the_state(
    deployment, tmp_path, serving_before
):
    """The state names an archive that was tampered with: refused (no model, or the old one keeps
    serving). Writing the good bytes back, and nothing else, deploys it within a few polls."""
    archive = deployment["small"]
    good = archive.read_bytes()
    if serving_before:
        _deploy(deployment["state"], deployment["full"], 1)
    with EndpointServer(("127.0.0.1", 0)) as server:
        server.start()
        watcher = server.watch_state(deployment["state"], base_dir=tmp_path, poll_interval=0.05)
        archive.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped
        _deploy(deployment["state"], archive, 2, sha256=sha256_hex(good))
        watcher.check()  # (what the next poll does: no need to wait for it)

        if serving_before:
            _wait_for_ping(server, 200, "1")
        else:
            _wait_for_ping(server, 503)
        assert "sha256" in watcher.last_error
        state = deployment["state"].read_bytes()

        time.sleep(0.05)  # a later mtime than the tampered archive's, whatever the clock's grain
        archive.write_bytes(good)
        started = time.monotonic()
        answer = _wait_for_ping(server, 200, "2")
        waited = time.monotonic() - started

    assert answer.json() == {"status": "ready", "model_version": 2}
    assert watcher.last_error is None
    assert deployment["state"].read_bytes() == state  # nobody edited the state
    assert waited < 3  # a few poll intervals (0.05 s each) and a model load


def test_a_state_contradicting_the_archives_version_is_refused(deployment, tmp_path, training_run):
    full = training_run.full
    labelled = tmp_path / "labelled.tar.gz"
    labelled.write_bytes(build_model_archive(full.model_bytes, {**full.spec, "model_version": 5}))
    _deploy(deployment["state"], labelled, 6)
    with EndpointServer(("127.0.0.1", 0)) as server:
        watcher = server.watch_state(deployment["state"], base_dir=tmp_path, poll_interval=60)

        assert server.model is None
        assert "version 5" in watcher.last_error


def test_a_state_for_another_endpoint_is_refused(deployment, tmp_path):
    _deploy(deployment["state"], deployment["full"], 1)
    with EndpointServer(("127.0.0.1", 0), endpoint_name="another-endpoint") as server:
        watcher = server.watch_state(deployment["state"], base_dir=tmp_path, poll_interval=60)

        assert server.model is None
        assert "another-endpoint" in watcher.last_error


def test_endpoint_dataset_deploys_atomically_and_loads_the_state(deployment):
    dataset = LocalEndpointDataset(filepath=str(deployment["state"]))
    assert not dataset.exists()
    with pytest.raises(DatasetError, match="does not exist"):
        dataset.load()

    dataset.save(_request(deployment["full"], 1))
    dataset.save(_request(deployment["small"], 2))

    state = dataset.load()
    assert dataset.exists()
    assert state["model_version"] == 2
    assert state["model_archive_sha256"] == sha256_hex(deployment["small"].read_bytes())
    assert state["reason"] == "newest Approved version of predictive-maintenance"
    assert datetime.fromisoformat(state["deployed_at"]).tzinfo is not None
    assert [path.name for path in deployment["state"].parent.iterdir()] == ["state.json"]


def test_endpoint_dataset_leaves_the_endpoint_alone_without_a_version(deployment, caplog):
    dataset = LocalEndpointDataset(filepath=str(deployment["state"]))
    caplog.set_level("INFO", logger="predictive_maintenance.serving.endpoint")

    dataset.save(_request(deployment["full"], None, reason="deploy_model is false"))

    assert not dataset.exists()
    assert "left as it is: deploy_model is false" in caplog.text


def test_endpoint_dataset_does_not_redeploy_the_same_version(deployment):
    dataset = LocalEndpointDataset(filepath=str(deployment["state"]))
    dataset.save(_request(deployment["full"], 1, deployed_at="2026-01-01T00:00:00+00:00"))
    written = deployment["state"].read_bytes()

    dataset.save(_request(deployment["full"], 1))

    assert deployment["state"].read_bytes() == written


def test_endpoint_dataset_refuses_an_archive_that_fails_its_check(deployment):
    dataset = LocalEndpointDataset(filepath=str(deployment["state"]))

    with pytest.raises(DatasetError, match="sha256"):
        dataset.save(_request(deployment["full"], 1, model_archive_sha256="0" * 64))
    with pytest.raises(DatasetError, match="No such file"):
        dataset.save(_request(deployment["full"], 1, model_archive=str(deployment["state"])))
    assert not dataset.exists()


@pytest.mark.parametrize(
    "change",
    [
        {"model_version": 0},
        {"model_version": "2"},
        {"model_archive_sha256": "abc"},
        {"endpoint_name": "no spaces allowed"},
        {"deployed_at": "yesterday"},
        {"model_archive": ""},
        {"model_group": None},
    ],
)
def test_endpoint_dataset_refuses_bad_requests(deployment, change):
    dataset = LocalEndpointDataset(filepath=str(deployment["state"]))

    with pytest.raises(DatasetError):
        dataset.save(_request(deployment["full"], 1, **change))
    assert not deployment["state"].exists()


# ---- command line ------------------------------------------------------------------------------
def test_invoke_command_prints_scores(server, expected_score):
    runner = CliRunner()
    url = ["--url", server.url]

    from_arguments = runner.invoke(endpoint, ["invoke", *url, CSV_ROW, CSV_ROW])
    from_stdin = runner.invoke(endpoint, ["invoke", *url], input=f"{CSV_ROW}\n")
    as_json = runner.invoke(
        endpoint,
        [
            "invoke",
            *url,
            "--content-type",
            "application/json",
            "--endpoint-name",
            ENDPOINT_NAME,
            CSV_ROW,
        ],
    )
    invalid = runner.invoke(endpoint, ["invoke", *url, "L,298.4,308.2,1582,600,216"])

    assert from_arguments.exit_code == 0, from_arguments.output
    assert from_arguments.stdout.splitlines() == [expected_score.decode().strip()] * 2
    assert from_stdin.stdout.strip() == expected_score.decode().strip()
    assert json.loads(as_json.stdout)["predictions"][0]["score"] == float(expected_score)
    assert invalid.exit_code == 1
    assert "HTTP 400" in invalid.output
    assert "torque_nm" in invalid.output


def test_invoke_command_explains_an_unreachable_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    result = CliRunner().invoke(endpoint, ["invoke", "--url", f"http://127.0.0.1:{port}", CSV_ROW])

    assert result.exit_code == 1
    assert "cannot reach the endpoint" in result.output


def test_serve_command_watches_the_configured_state_file(tmp_path, training_run):
    """`serve` with no options: the state file from the parameters, read through a KedroSession."""
    project = copy_project(tmp_path / "project")
    (project / "conf" / "local" / "parameters_endpoint.yml").write_text(
        "endpoint:\n  name: test-endpoint\n  state_file: data/11_endpoints/test-endpoint.json\n"
    )
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "predictive_maintenance.serving.cli", "serve", "--port", str(port)],
        cwd=project,
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true", "COLUMNS": "300"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        connection = lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # noqa: E731
        wait_for(process, lambda: call(connection(), "GET", "/ping").status == 503)
        archive = project / "data" / "full.tar.gz"
        archive.write_bytes(training_run.full.archive)
        write_endpoint_state(
            project / "data/11_endpoints/test-endpoint.json",
            {
                "endpoint_name": "test-endpoint",
                "model_group": "predictive-maintenance",
                "model_version": 4,
                "model_archive": "data/full.tar.gz",  # relative to the project
                "model_archive_sha256": sha256_hex(training_run.full.archive),
                "deployed_at": datetime.now(timezone.utc).isoformat(),
            },
        )
        wait_for(process, lambda: call(connection(), "GET", "/ping").status == 200)
        answer = post_csv(connection(), path="/endpoints/test-endpoint/invocations")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert answer.status == 200, output
    assert answer.headers["x-model-version"] == "4"
    assert process.returncode == 0, output
    assert "endpoint test-endpoint now serves version 4" in " ".join(output.split())


def test_serve_command_serves_a_model_directory(model_dir, expected_score):
    port = free_port()
    process = subprocess.Popen(
        serve_command(model_dir, port),
        env={**os.environ, "KEDRO_DISABLE_TELEMETRY": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        connection = lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # noqa: E731
        wait_for(process, lambda: call(connection(), "GET", "/ping").status == 200)
        answer = post_csv(connection(), path="/endpoints/any-name/invocations")
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=30)

    assert answer.status == 200, output
    assert answer.body == expected_score
    assert "x-model-version" not in answer.headers  # a bare model directory knows no version
    assert process.returncode == 0, output


def test_serve_command_checks_its_port_before_loading_anything(tmp_path):
    """A taken port fails at once, naming it and the fix: the empty --model-dir (which would fail
    to load) and the project configuration are never reached."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = CliRunner().invoke(
            endpoint, ["serve", "--port", str(port), "--model-dir", str(tmp_path)]
        )

    assert result.exit_code == 1
    assert result.output == (
        f"Error: cannot listen on 127.0.0.1:{port}: address already in use; stop what listens "
        "there or choose another port with --port\n"
    )


def test_serve_binds_before_loading_the_model(tmp_path):
    """serve() itself, without a listener: the taken port, not the empty model directory."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        with pytest.raises(ListenError, match=f"cannot listen on 127.0.0.1:{port}: address"):
            serve("127.0.0.1", port, model_dir=tmp_path)


def test_a_server_on_a_listening_socket_serves_and_closes_it(loaded_model, expected_score):
    listener = listen("127.0.0.1", 0)

    with EndpointServer(("127.0.0.1", 0), model=loaded_model, listener=listener) as server:
        server.start()
        assert server.port == listener.getsockname()[1]
        answer = post_csv(server)

    assert answer.body == expected_score
    assert listener.fileno() == -1  # closed with the server


def test_invoke_command_numbers_rows_as_the_endpoint_numbers_lines():
    result = CliRunner().invoke(
        endpoint,
        ["invoke", "--content-type", "application/json", CSV_ROW, "L,298.4,308.2"],
    )

    assert result.exit_code == 1
    assert result.output.startswith("Error: line 2 has 3 fields, expected 6: Type,")
