"""Load and fault tests of the endpoint, on 127.0.0.1 only, bounded in time.

- Hypothesis on the CSV and JSON parsers over real HTTP: arbitrary and near-valid bodies never get
  a 5xx, and every 4xx is a JSON body with ``error`` and ``message``;
- hot swaps back and forth under load at concurrency 32: every answer 200, scored by the model
  its ``x-model-version`` names (tests/serving/test_server.py checks one swap with 4 clients);
- 50,000 single-row requests at concurrency 64 against the endpoint process (``python -m
  predictive_maintenance.serving.cli serve``): every answer 200 with its row's score, and the
  server's resident memory flat after a warm-up;
- that process killed (SIGKILL) and restarted on the same port mid-load: clients see connection
  errors, never a wrong answer, and are served again after the restart.

The load client is raw HTTP/1.1 on asyncio protocols (uvloop), keep-alive, one request in flight
per connection: cheap enough per request (a quarter of the server's CPU) that the server sets the
pace. The endpoint process boots while the in-process tests run.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import uvloop
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.schema import READING_COLUMNS
from predictive_maintenance.serving.endpoint import write_endpoint_state
from predictive_maintenance.serving.inference import LoadedModel, invoke, model_fn
from predictive_maintenance.serving.package import extract_model_archive
from predictive_maintenance.serving.server import EndpointServer
from tests.serving.conftest import CSV_ROW, ENDPOINT_NAME, serve_command
from tests.support.net import free_port, wait_for

#: Single-row CSV bodies (workshop order) whose scores differ, so a mixed-up answer shows.
ROWS = (
    CSV_ROW.encode(),
    b"M,300.1,310.0,1400,40.0,10",
    b"H,302.5,311.2,2000,20.5,100",
    b"L,297.0,308.0,1300,65.0,200",
)
#: RSS growth of the endpoint between the end of the warm-up and the end of the load.
MAX_RSS_GROWTH_KB = 25 * 1024


def request_bytes(body: bytes, path: str = "/invocations") -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: text/csv\r\n"
        f"content-length: {len(body)}\r\n\r\n"
    ).encode() + body


def expected_scores(model: LoadedModel) -> list[bytes]:
    return [invoke(model, row, "text/csv", "text/csv")[0] for row in ROWS]


# ---- the load client ---------------------------------------------------------------------------
class Load:
    """What the connections share: the request budget, the tally and the check of each answer.

    ``check(row, headers, body)`` returns None for a right answer or a description of what is
    wrong. ``budget`` None: run until :meth:`stop`.
    """

    def __init__(self, check: Callable[[int, dict[bytes, bytes], bytes], str | None]) -> None:
        self.check = check
        self.requests = [request_bytes(row) for row in ROWS]
        self.budget: int | None = 0
        self.stopped = False
        self.answers = 0
        self.right = 0
        self.statuses: Counter[int] = Counter()
        self.wrong: list[str] = []
        self.connection_errors: Counter[str] = Counter()
        self.versions: dict[int, list[bytes]] = {}
        self._waiters: list[tuple[Callable[[], bool], asyncio.Future[None]]] = []

    def take(self) -> bool:
        if self.stopped:
            return False
        if self.budget is None:
            return True
        if self.budget <= 0:
            return False
        self.budget -= 1
        return True

    def stop(self) -> None:
        self.stopped = True

    def record(
        self, slot: int, row: int, status: int, headers: dict[bytes, bytes], body: bytes
    ) -> None:
        self.answers += 1
        self.statuses[status] += 1
        problem = (
            f"HTTP {status}: {body[:200]!r}" if status != 200 else self.check(row, headers, body)
        )
        if problem is None:
            self.right += 1
        elif len(self.wrong) < 20:
            self.wrong.append(f"row {row}: {problem}")
        version = headers.get(b"x-model-version")
        if version is not None:
            self.versions.setdefault(slot, []).append(version)
        self._wake()

    def failed(self, error: BaseException | None) -> None:
        self.connection_errors[type(error).__name__ if error else "EOF"] += 1
        self._wake()

    async def until(self, condition: Callable[[], bool], timeout: float) -> None:
        """Waits until ``condition()`` (checked after every answer or error)."""
        if condition():
            return
        future = asyncio.get_running_loop().create_future()
        self._waiters.append((condition, future))
        await asyncio.wait_for(future, timeout)

    def _wake(self) -> None:
        if self._waiters:
            for condition, future in list(self._waiters):
                if not future.done() and condition():
                    future.set_result(None)
                    self._waiters.remove((condition, future))


class Connection(asyncio.Protocol):
    """One keep-alive connection: sends a request, parses the answer, sends the next."""

    def __init__(self, load: Load, slot: int) -> None:
        self.load, self.slot = load, slot
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.buffer = b""
        self.row = slot % len(ROWS)
        self.in_flight = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._next()

    def _next(self) -> None:
        if self.load.take():
            self.row = (self.row + 1) % len(ROWS)
            self.in_flight = True
            self.transport.write(self.load.requests[self.row])
        else:
            self.in_flight = False
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buffer[:end].split(b"\r\n")
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            size = int(headers[b"content-length"])
            if len(self.buffer) < end + 4 + size:
                return
            body = self.buffer[end + 4 : end + 4 + size]
            self.buffer = self.buffer[end + 4 + size :]
            self.in_flight = False
            self.load.record(self.slot, self.row, int(lines[0][9:12]), headers, body)
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight or exc is not None:
            self.load.failed(exc)
        if not self.done.done():
            self.done.set_result(None)


async def _slot(load: Load, port: int, slot: int) -> None:
    """Keeps one connection going until the load ends; reconnects after connection errors."""
    loop = asyncio.get_running_loop()
    while not load.stopped and (load.budget is None or load.budget > 0):
        try:
            _, connection = await loop.create_connection(
                lambda: Connection(load, slot), "127.0.0.1", port
            )
        except OSError as error:  # refused, reset
            load.failed(error)
            await asyncio.sleep(0.05)
            continue
        await connection.done


async def drive(load: Load, port: int, concurrency: int, control: Any = None) -> None:
    """``concurrency`` connections until the budget is spent, or until ``control`` (a
    coroutine) returns and stops the load."""
    slots = [asyncio.create_task(_slot(load, port, slot)) for slot in range(concurrency)]
    try:
        if control is not None:
            try:
                await control
            finally:
                load.stop()
        await asyncio.gather(*slots)
    finally:
        for task in slots:
            task.cancel()


def run(coroutine: Any, timeout: float = 120) -> None:
    """Runs ``coroutine`` on a uvloop event loop, for at most ``timeout`` seconds."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(asyncio.wait_for(coroutine, timeout))


# ---- the endpoint process ----------------------------------------------------------------------
class EndpointProcess:
    """``python -m predictive_maintenance.serving.cli serve --model-dir DIR --port PORT``."""

    def __init__(self, model_dir: Path, port: int, log: Path) -> None:
        self.command = serve_command(model_dir, port)
        self.port, self.log = port, log
        self.process: subprocess.Popen | None = None

    def start(self) -> EndpointProcess:
        with self.log.open("ab") as output:
            self.process = subprocess.Popen(
                self.command, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT
            )
        return self

    def wait_ready(self, timeout: float = 60) -> None:
        def ping() -> bool:
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            try:
                connection.request("GET", "/ping", headers={"Connection": "close"})
                return connection.getresponse().status == 200
            finally:
                connection.close()

        wait_for(self.process, ping, timeout)

    def rss_kb(self) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError("no VmRSS")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture(scope="module", autouse=True)
def booting_endpoint(
    request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EndpointProcess | None]:
    """One endpoint process for the module, started with its first test if a selected test needs
    it (it boots in seconds, while the in-process tests run); a test that kills it restarts it on
    the same port."""
    needed = any(
        item.path == request.path and "endpoint_process" in getattr(item, "fixturenames", ())
        for item in request.session.items
    )
    if not needed:
        yield None
        return
    log = tmp_path_factory.mktemp("endpoint") / "endpoint.log"
    process = EndpointProcess(model_dir, free_port(), log).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def endpoint_process(booting_endpoint: EndpointProcess | None) -> EndpointProcess:
    assert booting_endpoint is not None
    booting_endpoint.wait_ready()
    return booting_endpoint


@pytest.fixture(scope="module")
def scores(loaded_model: LoadedModel) -> list[bytes]:
    expected = expected_scores(loaded_model)
    assert len(set(expected)) == len(ROWS), "the rows must have different scores"
    return expected


def by_row(scores: list[bytes]) -> Callable[[int, dict[bytes, bytes], bytes], str | None]:
    def check(row: int, headers: dict[bytes, bytes], body: bytes) -> str | None:
        return None if body == scores[row] else f"{body!r} instead of {scores[row]!r}"

    return check


# ---- Hypothesis on the parsers over HTTP -------------------------------------------------------
class Poster:
    """POSTs to /invocations on one keep-alive connection (http.client reopens it when an answer
    says ``connection: close``). Every request must be answered: a dropped connection fails."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, body: bytes, content_type: str) -> tuple[int, dict[str, str], bytes]:
        self.connection.request(
            "POST", "/invocations", body=body, headers={"Content-Type": content_type}
        )
        response = self.connection.getresponse()
        payload = response.read()
        headers = {name.lower(): value for name, value in response.getheaders()}
        return response.status, headers, payload


@pytest.fixture(scope="module")
def poster(server: EndpointServer) -> Iterator[Poster]:
    poster = Poster(server.port)
    yield poster
    poster.connection.close()


def assert_no_5xx(poster: Poster, body: bytes, content_type: str) -> None:
    status, headers, payload = poster.post(body, content_type)
    assert status < 500, (status, body[:300], payload[:300])
    if status >= 400:
        assert headers["content-type"] == "application/json", (status, headers)
        error = json.loads(payload)
        assert isinstance(error.get("error"), str), error
        assert isinstance(error.get("message"), str), error
        assert error["error"]
        assert error["message"]
    else:
        assert status == 200, (status, payload[:300])
        assert payload


PARSER_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
CONTENT_TYPES = st.sampled_from(["text/csv", "application/json"])
_GOOD_FIELDS = CSV_ROW.split(",")
ODD_FIELDS = (
    *("", " ", "nan", "NaN", "inf", "-inf", "1e309", "-0", "0x10", "1_000", "true", "null"),
    *('"L"', "'L'", "L,", '"', "\x00", "\ufeff298.4", "298.4\r", "١٢٣", "[]", "{}", "l", "X"),
)
#: What a CSV field can be mutated to: numbers near and beyond the bounds, odd spellings, text.
_ODD_FIELD = st.one_of(
    st.sampled_from(ODD_FIELDS),
    st.floats().map(repr),
    st.integers(min_value=-(10**30), max_value=10**30).map(str),
    st.text(max_size=20),
)


@st.composite
def near_valid_csv(draw: st.DrawFn) -> bytes:
    lines = []
    if draw(st.booleans()):
        lines.append(",".join(READING_COLUMNS))
    for _ in range(draw(st.integers(1, 4))):
        fields = list(_GOOD_FIELDS)
        for index in draw(st.sets(st.integers(0, len(fields) - 1), min_size=1, max_size=3)):
            fields[index] = draw(_ODD_FIELD)
        if draw(st.integers(0, 5)) == 0:
            fields = fields[: draw(st.integers(0, len(fields)))]
        if draw(st.integers(0, 5)) == 0:
            fields.append(draw(_ODD_FIELD))
        lines.append(",".join(fields))
    separator = draw(st.sampled_from(["\n", "\r\n", "\r", "\n\n"]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "utf-16"]))
    return separator.join(lines).encode(encoding, "surrogatepass")


_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**40), max_value=10**40),
    st.floats(),  # nan and inf are written as NaN / Infinity, which JSON does not allow
    st.text(max_size=20),
)
_ODD_JSON = st.recursive(
    _JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=10,
)
_GOOD_INSTANCE = {
    "type": "L",
    "air_temperature_k": 298.4,
    "process_temperature_k": 308.2,
    "rotational_speed_rpm": 1582,
    "torque_nm": 70.7,
    "tool_wear_min": 216,
}


@st.composite
def odd_json(draw: st.DrawFn) -> bytes:
    shape = draw(st.integers(0, 4))
    if shape == 0:  # anything at all
        return json.dumps(draw(_ODD_JSON)).encode()
    instances = []
    for _ in range(draw(st.integers(1, 3))):
        instance: dict[str, Any] = dict(_GOOD_INSTANCE)
        for key in draw(st.sets(st.sampled_from(sorted(instance)), min_size=1, max_size=3)):
            instance[key] = draw(_ODD_JSON)
        if draw(st.booleans()):
            instance[draw(st.text(max_size=10))] = draw(_ODD_JSON)
        instances.append(instance)
    if shape == 1:  # instances whose values are odd
        return json.dumps({"instances": instances}).encode()
    if shape == 2:  # the instances under another key, or beside other keys
        key = draw(st.sampled_from(["instances", "inputs", "data", ""]))
        return json.dumps({key: instances, draw(st.text(max_size=5)): draw(_ODD_JSON)}).encode()
    if shape == 3:  # a duplicate key, written by hand
        text = json.dumps({"instances": instances})
        field = draw(st.sampled_from(list(READING_COLUMNS)))
        value = json.dumps(draw(_ODD_JSON))
        return text.replace(f'"{field}": ', f'"{field}": {value}, "{field}": ', 1).encode()
    text = json.dumps({"instances": instances})  # cut or padded
    cut = draw(st.integers(0, len(text)))
    return (text[:cut] + draw(st.text(max_size=5))).encode("utf-8", "surrogatepass")


@PARSER_SETTINGS
@given(body=st.binary(max_size=2_000), content_type=CONTENT_TYPES)
def test_arbitrary_bytes_never_get_a_5xx(poster, body, content_type):
    assert_no_5xx(poster, body, content_type)


@PARSER_SETTINGS
@given(text=st.text(max_size=500), content_type=CONTENT_TYPES)
def test_arbitrary_text_never_gets_a_5xx(poster, text, content_type):
    assert_no_5xx(poster, text.encode("utf-8", "surrogatepass"), content_type)


@PARSER_SETTINGS
@given(body=near_valid_csv())
def test_near_valid_csv_never_gets_a_5xx(poster, body):
    assert_no_5xx(poster, body, "text/csv")


@PARSER_SETTINGS
@given(body=odd_json())
def test_json_with_odd_values_never_gets_a_5xx(poster, body):
    assert_no_5xx(poster, body, "application/json")


def test_the_parsers_still_score_after_the_fuzzing(poster, scores):
    status, _, payload = poster.post(ROWS[1], "text/csv")
    assert (status, payload) == (200, scores[1])
    assert not math.isnan(float(payload))


# ---- hot swaps under load ----------------------------------------------------------------------
def _deploy(state_file: Path, archive: Path, version: int) -> None:
    write_endpoint_state(
        state_file,
        {
            "endpoint_name": ENDPOINT_NAME,
            "model_group": "predictive-maintenance",
            "model_version": version,
            "model_archive": str(archive),
            "model_archive_sha256": sha256_hex(archive.read_bytes()),
            "deployed_at": datetime.now(timezone.utc).isoformat(),
        },
    )


def test_hot_swaps_under_load_at_concurrency_32_fail_no_request(
    tmp_path, training_run, loaded_model
):
    archives = {"full": tmp_path / "full.tar.gz", "small": tmp_path / "small.tar.gz"}
    archives["full"].write_bytes(training_run.full.archive)
    archives["small"].write_bytes(training_run.small.archive)
    small = model_fn(extract_model_archive(training_run.small.archive, tmp_path / "small"))
    expected = {"full": expected_scores(loaded_model), "small": expected_scores(small)}
    assert all(a != b for a, b in zip(expected["full"], expected["small"], strict=True))
    #: Odd versions are the full model, even ones the small one.
    model_of = {version: "full" if version % 2 else "small" for version in range(1, 7)}

    def check(row: int, headers: dict[bytes, bytes], body: bytes) -> str | None:
        version = int(headers.get(b"x-model-version", b"0"))
        if version not in model_of:
            return f"x-model-version {version!r}"
        wanted = expected[model_of[version]][row]
        return None if body == wanted else f"v{version}: {body!r} instead of {wanted!r}"

    state = tmp_path / "endpoints" / "state.json"
    _deploy(state, archives["full"], 1)
    load = Load(check)
    load.budget = None
    with EndpointServer(("127.0.0.1", 0)) as server:
        server.start()
        server.watch_state(state, base_dir=tmp_path, poll_interval=0.05)
        assert server.model.model_version == 1

        async def control() -> None:
            await load.until(lambda: load.right >= 500, timeout=30)
            for version in range(2, 7):
                _deploy(state, archives[model_of[version]], version)
                deadline = time.monotonic() + 20
                while server.model.model_version != version:
                    assert time.monotonic() < deadline, (
                        f"v{version} not served after 20 s: serving "
                        f"v{server.model.model_version}, the watcher deployed "
                        f"v{server.watcher.deployed['model_version']}, "
                        f"last error {server.watcher.last_error}"
                    )
                    await asyncio.sleep(0.01)
                # Counted from the swap on, not from the deploy: a slow swap must not let the
                # earlier version's answers use up the 400 this version is meant to get.
                answered = load.right
                await load.until(lambda answered=answered: load.right >= answered + 400, 30)

        run(drive(load, server.port, 32, control()))

    print(f"5 hot swaps under load: {load.right} right answers, statuses {dict(load.statuses)}")
    assert load.wrong == []
    assert dict(load.connection_errors) == {}
    assert set(load.statuses) == {200}
    seen = {version for versions in load.versions.values() for version in versions}
    assert seen == {str(version).encode() for version in range(1, 7)}
    for versions in load.versions.values():  # each connection only moves forward
        numbers = [int(version) for version in versions]
        assert numbers == sorted(numbers)


# ---- 50,000 requests ---------------------------------------------------------------------------
@pytest.mark.slow  # 10-15 s: the endpoint's CPU sets the pace (about 0.2 ms a request)
def test_50000_requests_at_concurrency_64_all_right_and_memory_flat(endpoint_process, scores):
    load = Load(by_row(scores))
    load.budget = 5_000
    run(drive(load, endpoint_process.port, 64))
    warm_rss = endpoint_process.rss_kb()
    load.budget = 45_000
    started, client_cpu, server_cpu = (
        time.perf_counter(),
        time.process_time(),
        endpoint_process.cpu_seconds(),
    )
    run(drive(load, endpoint_process.port, 64))
    seconds = time.perf_counter() - started
    client_cpu = time.process_time() - client_cpu
    server_cpu = endpoint_process.cpu_seconds() - server_cpu
    end_rss = endpoint_process.rss_kb()
    print(
        f"50,000 requests at concurrency 64: last 45,000 in {seconds:.1f} s "
        f"({45_000 / seconds:,.0f} req/s); endpoint RSS {warm_rss / 1024:.1f} MB after the "
        f"5,000-request warm-up, {end_rss / 1024:.1f} MB at the end "
        f"(+{(end_rss - warm_rss) / 1024:.1f} MB, bound {MAX_RSS_GROWTH_KB / 1024:.0f} MB); "
        f"CPU: endpoint {server_cpu:.1f} s, client {client_cpu:.1f} s"
    )

    assert load.wrong == []
    assert dict(load.connection_errors) == {}
    assert load.statuses == Counter({200: 50_000})
    assert load.right == 50_000
    assert end_rss - warm_rss < MAX_RSS_GROWTH_KB
    assert endpoint_process.process.poll() is None


# ---- killed and restarted mid-load -------------------------------------------------------------
@pytest.mark.slow  # a restart of the endpoint process: seconds
def test_a_killed_and_restarted_endpoint_gives_connection_errors_never_wrong_answers(
    endpoint_process, scores
):
    load = Load(by_row(scores))
    load.budget = None
    marks: dict[str, int] = {}

    async def control() -> None:
        await load.until(lambda: load.right >= 1_000, timeout=30)
        endpoint_process.kill()
        marks["right_at_kill"] = load.right
        await load.until(lambda: sum(load.connection_errors.values()) >= 64, timeout=30)
        endpoint_process.start()  # the same port: the CLI binds it before loading the model
        marks["right_at_restart"] = load.right
        await load.until(lambda: load.right >= marks["right_at_restart"] + 1_000, timeout=60)

    run(drive(load, endpoint_process.port, 64, control()))
    print(
        f"kill and restart under load: {load.right} right answers "
        f"({load.right - marks['right_at_restart']} after the restart), connection errors "
        f"{dict(load.connection_errors)}, statuses {dict(load.statuses)}"
    )

    assert load.wrong == []
    assert set(load.statuses) == {200}
    assert sum(load.connection_errors.values()) >= 64
    assert set(load.connection_errors) <= {
        "ConnectionRefusedError",
        "ConnectionResetError",
        "EOF",
        "BrokenPipeError",
    }
    assert load.right >= marks["right_at_restart"] + 1_000
    endpoint_process.wait_ready(timeout=5)
