"""The endpoint state watcher's change detection, step by step: no thread, no clock, no load.

Each test calls :meth:`StateWatcher.check` itself (what one poll does) and makes the "concurrent"
writer act at a chosen point inside a deployment attempt, through a hook. A watcher that recorded
the files' signatures *after* its attempt took a state (or archive) written during the attempt
as already seen, and never deployed it: a hot swap under load then waited forever
(tests/serving/test_load.py).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from predictive_maintenance.integrity import sha256_hex
from predictive_maintenance.serving import server as server_module
from predictive_maintenance.serving.endpoint import write_endpoint_state
from predictive_maintenance.serving.server import EndpointServer, StateWatcher
from tests.serving.conftest import ENDPOINT_NAME


def _deploy(state_file: Path, archive: Path, version: int, sha256: str | None = None) -> None:
    write_endpoint_state(
        state_file,
        {
            "endpoint_name": ENDPOINT_NAME,
            "model_group": "predictive-maintenance",
            "model_version": version,
            "model_archive": str(archive),
            "model_archive_sha256": sha256 or sha256_hex(archive.read_bytes()),
            "deployed_at": datetime.now(timezone.utc).isoformat(),
        },
    )


def _replace_bytes(path: Path, content: bytes) -> None:
    """Writes ``content`` to ``path`` atomically: a new inode, so a new signature whatever the
    file system's timestamp grain."""
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, path)


def _once(action: Callable[[], None]) -> Callable[[], None]:
    done = []

    def run() -> None:
        if not done:
            done.append(True)
            action()

    return run


@pytest.fixture
def files(tmp_path: Path, training_run: Any) -> dict[str, Path]:
    full, small = tmp_path / "full.tar.gz", tmp_path / "small.tar.gz"
    full.write_bytes(training_run.full.archive)
    small.write_bytes(training_run.small.archive)
    return {"full": full, "small": small, "state": tmp_path / "endpoints" / "state.json"}


@pytest.fixture
def watched(
    files: dict[str, Path], tmp_path: Path
) -> Iterator[tuple[EndpointServer, StateWatcher]]:
    """A server watching the state file, never started: the tests poll with ``check()``."""
    _deploy(files["state"], files["full"], 1)
    with EndpointServer(("127.0.0.1", 0)) as server:
        watcher = StateWatcher(server, files["state"], base_dir=tmp_path, poll_interval=60)
        server.watcher = watcher  # (closing the server removes what the watcher extracted)
        assert watcher.check() is True
        assert server.model.model_version == 1
        yield server, watcher


@pytest.mark.parametrize("moment", ["while-the-model-loads", "right-after-the-swap"])
def test_a_state_written_during_a_deployment_is_deployed_by_the_next_poll(
    files, watched, monkeypatch, moment
):
    server, watcher = watched
    write_v3 = _once(lambda: _deploy(files["state"], files["full"], 3))
    if moment == "while-the-model-loads":
        model_fn = server_module.model_fn

        def loading(model_dir: Any) -> Any:
            write_v3()
            return model_fn(model_dir)

        monkeypatch.setattr(server_module, "model_fn", loading)
    else:
        swap = server.swap

        def swapped(model: Any) -> None:
            swap(model)
            write_v3()

        monkeypatch.setattr(server, "swap", swapped)

    _deploy(files["state"], files["small"], 2)
    assert watcher.check() is True  # version 2, during which version 3's state was written
    assert server.model.model_version == 2

    assert watcher.check() is True  # the next poll: version 3, not "already seen"
    assert server.model.model_version == 3
    assert watcher.deployed["model_version"] == 3
    assert watcher.last_error is None


def test_an_archive_restored_during_a_refused_deployment_is_deployed_by_the_next_poll(
    files, watched, monkeypatch
):
    server, watcher = watched
    archive = files["small"]
    good = archive.read_bytes()
    _replace_bytes(archive, good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped
    restore = _once(lambda: _replace_bytes(archive, good))
    verify = server_module.verify_sha256

    def verifying(content: bytes, *args: Any, **kwargs: Any) -> Any:
        restore()  # after the tampered bytes were read: this attempt still fails
        return verify(content, *args, **kwargs)

    monkeypatch.setattr(server_module, "verify_sha256", verifying)
    _deploy(files["state"], archive, 2, sha256=sha256_hex(good))

    assert watcher.check() is False
    assert "sha256" in watcher.last_error
    assert server.model.model_version == 1

    assert watcher.check() is True  # the archive changed since the attempt read it
    assert server.model.model_version == 2
    assert watcher.last_error is None


def test_unchanged_files_are_not_read_again_after_a_deployment(files, watched, monkeypatch):
    """The recorded signature includes the archive the attempt learnt about: no second attempt."""
    server, watcher = watched
    reads = []
    read = server_module.read_endpoint_state
    monkeypatch.setattr(
        server_module, "read_endpoint_state", lambda path: reads.append(path) or read(path)
    )
    _deploy(files["state"], files["small"], 2)
    assert watcher.check() is True
    assert [watcher.check() for _ in range(3)] == [False, False, False]
    assert len(reads) == 1
    assert server.model.model_version == 2


def test_a_state_replaced_between_the_stat_and_the_read_is_swapped_in_once(
    files, watched, monkeypatch
):
    """The newer state is what gets deployed; the next poll sees a change (the stat was of the
    older file), reads the state again and finds it already serving: no second swap."""
    server, watcher = watched
    write_v3 = _once(lambda: _deploy(files["state"], files["full"], 3))
    read = server_module.read_endpoint_state

    def reading(path: Any) -> Any:
        write_v3()
        return read(path)

    monkeypatch.setattr(server_module, "read_endpoint_state", reading)
    _deploy(files["state"], files["small"], 2)
    assert watcher.check() is True
    assert server.model.model_version == 3
    serving = server.model

    assert watcher.check() is False
    assert server.model is serving
    assert watcher.check() is False
