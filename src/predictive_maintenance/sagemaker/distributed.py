"""One node, several instances: a training job's hosts, XGBoost's collective across them, and the
node input each host reads only its shard of.

With ``training_job.instance_count`` > 1 (``conf/<env>/sagemaker.yml``, or a node override), the
runner splits each of the node's ``sharded_inputs`` (data frames) into row-contiguous parts,
uploads them as separate S3 objects under one prefix and hands that prefix to the job as a
``ShardedByS3Key`` channel, so SageMaker gives each instance about 1/n of the objects; every other
input stays ``FullyReplicated`` (e.g. the validation set that early stopping watches). The job
spec (replicated) lists every part with its sha256, so a host checks what it received.

On every host the job program joins XGBoost's collective the way the stock image's own
``sagemaker_xgboost_container.distributed`` does: the first host (sorted names) starts the
``RabitTracker`` on port 9099, every host connects as worker ``hosts.index(current_host)``, so
rank 0 is the first host. Inside the collective ``xgboost.train`` builds its histograms from every
host's rows (allreduce), so each host ends with the same booster; only rank 0 writes the job's
outputs. The node functions are unchanged, except that ``exact`` splits cannot be distributed
(a node checks ``xgboost.collective.is_distributed()`` to switch to ``hist``).

The ``local`` backend runs the hosts as processes on this machine; it tells them where the hosts
are through :data:`HOST_ADDRESSES_VARIABLE` (the container network's DNS is not there) and which
port the tracker takes (:data:`TRACKER_PORT_VARIABLE`, a free one instead of 9099). On SageMaker
neither is set: the names resolve, and the port is the image's.

Python 3.10 and the standard library until a collective or a split is asked for.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

#: SageMaker's description of the job's hosts, in the job's input config directory.
RESOURCE_CONFIG: Final = "resourceconfig.json"
#: JSON ``{host: address}``: set by the local backend only, where ``algo-<n>`` does not resolve.
HOST_ADDRESSES_VARIABLE: Final = "KEDRO_SAGEMAKER_HOST_ADDRESSES"
#: The tracker's port: set by the local backend only, so jobs running side by side do not meet.
TRACKER_PORT_VARIABLE: Final = "KEDRO_SAGEMAKER_TRACKER_PORT"
#: The port the stock image's tracker listens on.
DEFAULT_TRACKER_PORT: Final = 9099
#: The collectives a job can join (the spec's ``distributed.collective``).
COLLECTIVES: Final = ("xgboost",)
#: Hosts start at different moments: how long a worker keeps trying to reach the tracker, and
#: how long the first host waits for its DNS name (the image waits up to 15 minutes).
CONNECT_SECONDS: Final = 300.0
CONNECT_RETRY_SECONDS: Final = 0.25
#: XGBoost's timeout of one collective operation. A host may still be reading a large shard while
#: the others wait in the first allreduce, so this is generous; a lost host ends the job through
#: the platform (SageMaker stops the others, as the local backend does).
OPERATION_TIMEOUT_SECONDS: Final = 1800
#: How a part of a sharded input is named: ``part-00000`` plus its codec's suffix.
PART_STEM: Final = "part-{index:05d}"


class DistributedJobError(RuntimeError):
    """The hosts of a job cannot form the collective, or a host's shard is not what it should be."""


@dataclass(frozen=True)
class Cluster:
    """The hosts of a training job, as ``resourceconfig.json`` lists them, and this one."""

    hosts: tuple[str, ...]
    current_host: str

    def __post_init__(self) -> None:
        if self.current_host not in self.hosts:
            raise DistributedJobError(
                f"current host {self.current_host!r} is not among the hosts {list(self.hosts)}"
            )

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def rank(self) -> int:
        """The host's index in the sorted names: its rank in the collective (0 writes outputs)."""
        return self.hosts.index(self.current_host)

    def describe(self) -> str:
        return f"host {self.current_host} (rank {self.rank} of {self.size})"


def cluster_from_environment(environ: Mapping[str, str], config_dir: Path) -> Cluster:
    """The job's hosts: the training toolkit's ``SM_HOSTS``/``SM_CURRENT_HOST``, else SageMaker's
    ``<config_dir>/resourceconfig.json``, else this single host."""
    if "SM_HOSTS" in environ and "SM_CURRENT_HOST" in environ:
        hosts, current = json.loads(environ["SM_HOSTS"]), environ["SM_CURRENT_HOST"]
    elif (config_dir / RESOURCE_CONFIG).is_file():
        resources = json.loads((config_dir / RESOURCE_CONFIG).read_text())
        hosts, current = resources["hosts"], resources["current_host"]
    else:
        return Cluster(("algo-1",), "algo-1")
    return Cluster(tuple(sorted(hosts)), current)


# ---- the submitting side: parts of a data frame --------------------------------------------------
def split_rows(frame: Any, parts: int) -> list[Any]:
    """``frame`` in ``parts`` row-contiguous pieces whose sizes differ by at most one row; in
    order, so concatenating them gives ``frame`` back (index included)."""
    if not hasattr(frame, "iloc") or not hasattr(frame, "columns"):
        raise DistributedJobError(
            f"a sharded input must be a pandas DataFrame, not {type(frame).__name__}"
        )
    if len(frame) < parts:
        raise DistributedJobError(f"{len(frame)} rows cannot be split into {parts} non-empty parts")
    rows, bounds = len(frame), [0]
    for index in range(parts):
        bounds.append(bounds[-1] + rows // parts + (1 if index < rows % parts else 0))
    return [frame.iloc[start:stop] for start, stop in itertools.pairwise(bounds)]


def part_stem(index: int) -> str:
    return PART_STEM.format(index=index)


# ---- the job's side: the collective --------------------------------------------------------------
def _address(host: str, addresses: Mapping[str, str], deadline: float) -> str:
    """``host``'s IP address: from the local backend's table, else DNS, retried until the
    container network has it (as the image's ``wait_hostname_resolution`` does)."""
    if host in addresses:
        return addresses[host]
    delay = 0.1
    while True:
        try:
            return socket.gethostbyname(host)
        except OSError as error:
            if time.monotonic() >= deadline:
                raise DistributedJobError(f"host {host} does not resolve: {error}") from None
            time.sleep(delay)
            delay = min(delay * 2, 5.0)


def _connect(collective: Any, arguments: dict[str, Any], deadline: float) -> Any:
    """Enters XGBoost's ``CommunicatorContext``, retried until ``deadline``: the tracker may not
    listen yet (a raw TCP probe instead of a real attempt would upset the protocol)."""
    started, refused = time.monotonic(), 0
    while True:
        context = collective.CommunicatorContext(**arguments)
        # XGBoost warns about a refused connection in several lines; one line below says it.
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r".*(Failed to connect|Retrying conn)")
            try:
                context.__enter__()
            except Exception:
                if time.monotonic() >= deadline:
                    raise
                refused += 1
                time.sleep(CONNECT_RETRY_SECONDS)
                continue
        if refused:
            print(
                f"kedro job: the tracker answered after {time.monotonic() - started:.1f} s "
                f"({refused} refused attempts: the first host was still starting)",
                flush=True,
            )
        return context


@contextmanager
def xgboost_collective(cluster: Cluster, environ: Mapping[str, str]) -> Iterator[int]:
    """This host as a worker of XGBoost's collective (the first host also runs the tracker);
    yields the rank XGBoost gave it. Single-host jobs get rank 0 and no collective."""
    if cluster.size == 1:
        yield 0
        return
    from xgboost import collective  # noqa: PLC0415 -- only multi-host jobs need XGBoost here
    from xgboost.tracker import RabitTracker  # noqa: PLC0415

    deadline = time.monotonic() + CONNECT_SECONDS
    addresses = json.loads(environ.get(HOST_ADDRESSES_VARIABLE) or "{}")
    tracker_address = _address(cluster.hosts[0], addresses, deadline)
    port = int(environ.get(TRACKER_PORT_VARIABLE) or DEFAULT_TRACKER_PORT)
    tracker = None
    if cluster.rank == 0:
        # sortby="task": ranks follow dmlc_task_id, i.e. the sorted host names.
        tracker = RabitTracker(
            n_workers=cluster.size, host_ip=tracker_address, port=port, sortby="task"
        )
        tracker.start()
    arguments = {
        "dmlc_tracker_uri": tracker_address,
        "dmlc_tracker_port": port,
        "dmlc_task_id": str(cluster.rank),
        "dmlc_timeout": OPERATION_TIMEOUT_SECONDS,
        # One attempt per context: this loop retries every CONNECT_RETRY_SECONDS, where
        # XGBoost's own retries back off (2 s, 4 s, ...) past a tracker that is already up.
        "dmlc_retry": 1,
    }
    context = None
    failed = False
    try:
        context = _connect(collective, arguments, deadline)
        rank = collective.get_rank()
        print(
            f"kedro job: {cluster.describe()} joined XGBoost's collective of {cluster.size} "
            f"workers at {tracker_address}:{port} as rank {rank}",
            flush=True,
        )
        yield rank
    except BaseException:
        failed = True
        raise
    finally:
        # After a failure the other hosts may never reach the end: do not wait for them (the
        # platform stops them when this host's program exits non-zero).
        if context is not None and not failed:
            context.__exit__(None, None, None)
        if tracker is not None:
            if not failed:
                tracker.wait_for(OPERATION_TIMEOUT_SECONDS)
            tracker.free()


def check_collective(name: str) -> None:
    if name not in COLLECTIVES:
        raise DistributedJobError(
            f"unknown collective {name!r} in the job spec (known: {', '.join(COLLECTIVES)})"
        )


def environment_for_local_hosts(hosts: list[str], port: int) -> dict[str, str]:
    """What the local backend adds to every host's environment (see the module docstring)."""
    return {
        HOST_ADDRESSES_VARIABLE: json.dumps(dict.fromkeys(hosts, "127.0.0.1")),
        TRACKER_PORT_VARIABLE: str(port),
    }


def free_port() -> int:
    """A TCP port nothing listens on now, for a local job's tracker."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
