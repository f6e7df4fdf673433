"""Slowloris probe: ``slowloris.py PORT PIDS DURATION [--conns 400] [--interval 5]``.

Opens ``--conns`` connections that each send a partial request head, then one more header byte
every ``--interval`` seconds, for ``DURATION`` seconds. Also opens one keep-alive connection that
makes one full request and then idles (how long until the server closes an idle connection).
Every interval it prints one JSON line: slow connections still open, the server's threads and
RSS (``PIDS``: comma-separated process ids) and the outcome of a normal request on a fresh
connection; at the end a ``summary`` line. ``tables.py`` turns these into table C.
"""

import argparse
import json
import select
import socket
import subprocess
import time

REQUEST = (
    b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: text/csv\r\nContent-Length: 25\r\n\r\n"
    b"L,298.1,308.6,1551,42.8,0"
)
PARTIAL_HEAD = b"GET / HTTP/1.1\r\nHost: x\r\nX-a: "


def emit(record: dict) -> None:
    print(json.dumps(record), flush=True)


def normal_request(port: int, timeout: float = 15.0) -> dict:
    """Status (or error) and latency in ms of one request on a fresh connection."""
    start = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
            conn.sendall(REQUEST)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(4096)
                if not chunk:
                    break
                data += chunk
        status = data.split(b" ")[1].decode() if data else "EOF"
    except OSError as error:
        status = f"ERR {type(error).__name__}"
    return {"status": status, "ms": round(1000 * (time.perf_counter() - start), 1)}


def threads_and_rss(pids: str) -> dict:
    """Threads and resident memory (MB) summed over the server's processes."""
    out = subprocess.run(
        ["ps", "-o", "nlwp=,rss=", "-p", pids], capture_output=True, text=True, check=False
    ).stdout.split()
    return {
        "threads": sum(int(x) for x in out[0::2]),
        "rss_mb": sum(int(x) for x in out[1::2]) // 1024,
    }


class Probe:
    def __init__(self, port: int, pids: str) -> None:
        self.port, self.pids = port, pids
        self.before = threads_and_rss(pids)
        self.peak = dict(self.before)
        self.worst = {"status": "200", "ms": 0.0}  # the first failure, else the slowest answer
        self.conns: list[socket.socket] = []
        self.closed: dict[int, tuple[float, bytes]] = {}  # id(conn) -> (when, start of reply)
        self.idle_closed_after: float | None = None
        self.start = self.idle_since = time.monotonic()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def open(self, count: int) -> None:
        """The idle keep-alive connection, then ``count`` slow ones."""
        self.idle = socket.create_connection(("127.0.0.1", self.port))
        self.idle.sendall(REQUEST)
        time.sleep(0.3)
        self.idle.recv(65536)
        self.idle.setblocking(False)
        self.idle_since = self.start = time.monotonic()
        failed = 0
        for _ in range(count):
            try:
                conn = socket.create_connection(("127.0.0.1", self.port), timeout=5)
                conn.sendall(PARTIAL_HEAD)
                conn.setblocking(False)
                self.conns.append(conn)
            except OSError:
                failed += 1
        emit({"opened": len(self.conns), "failed": failed, "seconds": round(self.elapsed(), 1)})

    def poll(self) -> None:
        """Notes the connections the server closed (or answered) since the last poll."""
        readable, _, _ = select.select([*self.conns, self.idle], [], [], 0)
        for conn in readable:
            try:
                data = conn.recv(4096)
            except OSError:
                data = b""
            if conn is self.idle:
                if not data and self.idle_closed_after is None:
                    self.idle_closed_after = round(time.monotonic() - self.idle_since, 1)
            elif id(conn) not in self.closed:
                self.closed[id(conn)] = (self.elapsed(), data[:40])

    def tick(self) -> None:
        """One more header byte on each slow connection, then usage and a normal request."""
        for conn in self.conns:
            if id(conn) not in self.closed:
                try:
                    conn.send(b"a")
                except OSError:
                    self.closed[id(conn)] = (self.elapsed(), b"send failed")
        usage = threads_and_rss(self.pids)
        self.peak = {key: max(self.peak[key], usage[key]) for key in self.peak}
        normal = normal_request(self.port)
        worst = self.worst
        if worst["status"] == "200" and (normal["status"] != "200" or normal["ms"] > worst["ms"]):
            self.worst = normal
        emit(
            {
                "t": round(self.elapsed(), 1),
                "slow_alive": len(self.conns) - len(self.closed),
                **usage,
                "normal": normal,
                "idle_closed_after": self.idle_closed_after,
            }
        )

    def summary(self, duration: float) -> dict:
        times = sorted(when for when, _ in self.closed.values())
        replies = [reply for _, reply in self.closed.values()]
        return {
            "duration": duration,
            "opened": len(self.conns),
            "slow_alive": len(self.conns) - len(self.closed),
            "closed_first": round(times[0], 1) if times else None,
            "closed_last": round(times[-1], 1) if times else None,
            "closed_reply": replies[0].decode("latin-1") if replies else None,
            "before": self.before,
            "peak": self.peak,
            "worst_normal": self.worst,
            "idle_closed_after": self.idle_closed_after,
        }

    def close(self) -> None:
        for conn in [*self.conns, self.idle]:
            conn.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("pids")
    parser.add_argument("duration", type=float)
    parser.add_argument("--conns", type=int, default=400)
    parser.add_argument("--interval", type=float, default=5.0)
    args = parser.parse_args()
    probe = Probe(args.port, args.pids)
    emit({"before": probe.before, "normal": normal_request(args.port)})
    probe.open(args.conns)
    next_tick = 0.0
    while probe.elapsed() < args.duration:
        time.sleep(0.5)
        probe.poll()
        if probe.elapsed() >= next_tick:
            probe.tick()
            next_tick += args.interval
    emit({"summary": probe.summary(args.duration)})
    probe.close()


if __name__ == "__main__":
    main()
