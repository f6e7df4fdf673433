"""``kedro data fetch`` and the download/verify functions behind it.

A real HTTP server on 127.0.0.1 serves the committed file (or a zip of it, or altered bytes);
nothing is mocked and nothing leaves this machine.
"""

from __future__ import annotations

import io
import socket
import threading
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from predictive_maintenance.data_source import (
    UCI_PAGE,
    FetchError,
    SourceError,
    extract_csv,
    failure_help,
    fetch_verified,
)
from predictive_maintenance.integrity import sha256_hex
from tests.support.cli import invoke, kedro

RAW_RELATIVE = Path("data") / "01_raw" / "ai4i2020.csv"


@dataclass
class Server:
    """Routes path -> (status, body); records every requested path."""

    port: int
    routes: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    delay_seconds: float = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(port=0)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            time.sleep(state.delay_seconds)
            status, body = state.routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass  # keep the test output clean

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.port = httpd.server_address[1]
    thread = threading.Thread(
        target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


@pytest.fixture
def closed_url() -> str:
    """A URL on a 127.0.0.1 port nobody listens on: connections are refused, as when offline."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/ai4i2020.csv"


@pytest.fixture(scope="module")
def expected_sha256(project_root: Path) -> str:
    params = yaml.safe_load(
        (project_root / "conf" / "base" / "parameters_data_engineering.yml").read_text()
    )
    return params["raw_data"]["sha256"]


def zipped(data: bytes, name: str = "ai4i2020.csv") -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(name, data)
    return buffer.getvalue()


def altered(data: bytes) -> bytes:
    return data.replace(b"L47181", b"L47182", 1)


# ---- data_source ---------------------------------------------------------------------------------


def test_committed_file_has_the_expected_checksum(raw_csv_bytes: bytes, expected_sha256: str):
    assert sha256_hex(raw_csv_bytes) == expected_sha256


def test_fetch_plain_csv(server: Server, raw_csv_bytes: bytes, expected_sha256: str):
    server.routes["/ai4i2020.csv"] = (200, raw_csv_bytes)

    result = fetch_verified([server.url("/ai4i2020.csv")], expected_sha256, timeout=5)

    assert result.data == raw_csv_bytes
    assert result.sha256 == expected_sha256
    assert result.verified
    assert result.url == server.url("/ai4i2020.csv")
    assert result.failures == ()


@pytest.mark.parametrize(
    ("path", "member"),
    [
        ("/static/public/601/ai4i+2020+predictive+maintenance+dataset.zip", "ai4i2020.csv"),
        ("/download?id=601", "ai4i2020.csv"),  # no .zip suffix: recognised by its magic bytes
        ("/dataset.zip", "ai4i 2020/ai4i2020.csv"),  # member in a folder
    ],
)
def test_fetch_zip(
    server: Server, raw_csv_bytes: bytes, expected_sha256: str, path: str, member: str
):
    server.routes[path] = (200, zipped(raw_csv_bytes, member))

    result = fetch_verified([server.url(path)], expected_sha256, timeout=5)

    assert result.data == raw_csv_bytes
    assert result.sha256 == expected_sha256


def test_altered_bytes_fail_the_checksum(
    server: Server, raw_csv_bytes: bytes, expected_sha256: str
):
    bad = altered(raw_csv_bytes)
    server.routes["/ai4i2020.csv"] = (200, bad)
    url = server.url("/ai4i2020.csv")

    with pytest.raises(FetchError) as caught:
        fetch_verified([url], expected_sha256, timeout=5)

    message = str(caught.value)
    assert url in message
    assert "checksum mismatch" in message
    assert sha256_hex(bad) in message
    assert expected_sha256 in message
    assert not caught.value.network
    assert UCI_PAGE not in failure_help(caught.value, str(RAW_RELATIVE))  # not an offline case


def test_http_404_is_reported(server: Server, expected_sha256: str):
    url = server.url("/missing.csv")

    with pytest.raises(FetchError) as caught:
        fetch_verified([url], expected_sha256, timeout=5)

    assert f"{url}: HTTP 404" in str(caught.value)
    assert not caught.value.network


def test_unreachable_server_says_what_to_do(closed_url: str, expected_sha256: str):
    with pytest.raises(FetchError) as caught:
        fetch_verified([closed_url], expected_sha256, timeout=5)

    assert caught.value.network
    message = failure_help(caught.value, "data/01_raw/ai4i2020.csv")
    assert closed_url in message
    assert "cannot connect" in message
    assert "committed" in message
    assert UCI_PAGE in message
    assert "at data/01_raw/ai4i2020.csv" in message
    assert "kedro run" in message


def test_timeout_is_a_network_failure(server: Server, raw_csv_bytes: bytes, expected_sha256: str):
    server.routes["/slow.csv"] = (200, raw_csv_bytes)
    server.delay_seconds = 1.0

    with pytest.raises(FetchError) as caught:
        fetch_verified([server.url("/slow.csv")], expected_sha256, timeout=0.2)

    assert caught.value.network
    assert "timed out" in str(caught.value)


def test_falls_back_to_the_next_url(
    server: Server, closed_url: str, raw_csv_bytes: bytes, expected_sha256: str
):
    server.routes["/good.zip"] = (200, zipped(raw_csv_bytes))
    urls = [closed_url, server.url("/gone.csv"), server.url("/good.zip")]

    result = fetch_verified(urls, expected_sha256, timeout=5)

    assert result.data == raw_csv_bytes
    assert result.url == urls[2]
    assert [failure.url for failure in result.failures] == urls[:2]
    assert [failure.network for failure in result.failures] == [True, False]


def test_without_expected_checksum_any_file_is_taken(server: Server, raw_csv_bytes: bytes):
    bad = altered(raw_csv_bytes)
    server.routes["/mine.csv"] = (200, bad)

    result = fetch_verified([server.url("/mine.csv")], None, timeout=5)

    assert result.data == bad
    assert result.sha256 == sha256_hex(bad)
    assert not result.verified


def test_zip_url_with_non_zip_body_fails(server: Server, expected_sha256: str):
    server.routes["/dataset.zip"] = (200, b"<html>maintenance page</html>")

    with pytest.raises(FetchError, match="not a readable zip archive"):
        fetch_verified([server.url("/dataset.zip")], expected_sha256, timeout=5)


def test_extract_csv_names_what_the_zip_holds(raw_csv_bytes: bytes):
    with pytest.raises(SourceError, match=r"no member 'ai4i2020\.csv'.*other\.csv"):
        extract_csv(zipped(raw_csv_bytes, "other.csv"))


def test_no_urls_is_an_error():
    with pytest.raises(ValueError, match="no source URLs"):
        fetch_verified([], None)


# ---- kedro data fetch ----------------------------------------------------------------------------


@pytest.fixture
def kedro_cli(project_copy: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs ``kedro ARGS...`` in-process in the project copy, as the ``kedro`` executable does."""

    def run(*args: str):
        return invoke(project_copy, monkeypatch, *args)

    return run


def test_cli_up_to_date_downloads_nothing(
    kedro_cli, server: Server, project_copy: Path, raw_csv_bytes: bytes
):
    server.routes["/ai4i2020.csv"] = (200, raw_csv_bytes)

    result = kedro_cli("data", "fetch", "--url", server.url("/ai4i2020.csv"))

    assert result.exit_code == 0, result.output
    assert "is up to date" in result.output
    assert server.requests == []
    assert (project_copy / RAW_RELATIVE).read_bytes() == raw_csv_bytes


def test_cli_replaces_a_corrupted_file(
    kedro_cli, server: Server, closed_url: str, project_copy: Path, raw_csv_bytes: bytes
):
    raw_file = project_copy / RAW_RELATIVE
    raw_file.write_bytes(altered(raw_csv_bytes))
    server.routes["/dataset.zip"] = (200, zipped(raw_csv_bytes))

    result = kedro_cli("data", "fetch", "--url", closed_url, "--url", server.url("/dataset.zip"))

    assert result.exit_code == 0, result.output
    assert server.requests == ["/dataset.zip"]
    assert sha256_hex(raw_file.read_bytes()) == sha256_hex(raw_csv_bytes)
    assert "Saved 522,048 bytes" in result.output


def test_cli_force_with_a_bad_download_keeps_the_file(
    kedro_cli, server: Server, project_copy: Path, raw_csv_bytes: bytes, expected_sha256: str
):
    bad = altered(raw_csv_bytes)
    server.routes["/ai4i2020.csv"] = (200, bad)

    result = kedro_cli("data", "fetch", "--force", "--url", server.url("/ai4i2020.csv"))

    assert result.exit_code == 1
    assert server.requests == ["/ai4i2020.csv"]
    assert sha256_hex(bad) in result.output
    assert expected_sha256 in result.output
    assert (project_copy / RAW_RELATIVE).read_bytes() == raw_csv_bytes


def test_cli_without_checksum_prints_it_to_record(
    kedro_cli, server: Server, project_copy: Path, raw_csv_bytes: bytes
):
    mine = altered(raw_csv_bytes)
    server.routes["/mine.csv"] = (200, mine)
    env_dir = project_copy / "conf" / "plant"
    env_dir.mkdir()
    (env_dir / "parameters_data_engineering.yml").write_text(
        yaml.safe_dump({"raw_data": {"sha256": None, "source_urls": [server.url("/mine.csv")]}})
    )
    raw_file = project_copy / RAW_RELATIVE

    kept = kedro_cli("data", "fetch", "--env", "plant")
    assert kept.exit_code == 0, kept.output
    assert "--force" in kept.output
    assert server.requests == []
    assert raw_file.read_bytes() == raw_csv_bytes

    raw_file.unlink()
    fetched = kedro_cli("data", "fetch", "--env", "plant")
    assert fetched.exit_code == 0, fetched.output
    assert raw_file.read_bytes() == mine
    assert f"sha256: {sha256_hex(mine)}" in fetched.output
    assert "Record" in fetched.output


def test_cli_offline_exits_1_and_keeps_the_file(
    closed_url: str, project_copy: Path, raw_csv_bytes: bytes
):
    """Through the real ``kedro`` executable, as a user would run it."""
    raw_file = project_copy / RAW_RELATIVE
    corrupted = altered(raw_csv_bytes)
    raw_file.write_bytes(corrupted)

    completed = kedro(project_copy, "data", "fetch", "--url", closed_url, "--timeout", "5")

    assert completed.returncode == 1, completed.stdout + completed.stderr
    assert closed_url in completed.stderr
    assert UCI_PAGE in completed.stderr
    assert "data/01_raw/ai4i2020.csv" in completed.stderr
    assert raw_file.read_bytes() == corrupted
