"""Prints tables A and B (throughput) and C (robustness) from a ``run.sh`` results directory.

``tables.py RESULTS_DIR SERVER...``: servers in column/row order. A and B cells are
``req/s (p50 / p99 ms)``, then ``Tn`` for n wrk timeouts, ``En`` for other socket errors and ``Nn``
for n non-2xx answers. C is built from the probes' JSON lines; the concurrency-limit and
embedding checks are printed as they ran.
"""

import json
import re
import sys
from pathlib import Path

UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}
TITLES = {
    "trivial": "A. Trivial app (12-byte body)",
    "scoring": "B. Scoring app (one CSV row, ~1 ms CPU under the GIL)",
}


def ms(text: str | None) -> str:
    """A wrk duration (``344.00us``, ``5.61ms``, ``1.30s``) in ms, 2-3 significant digits."""
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text or "")
    if not match:
        return "?"
    value = float(match.group(1)) * UNITS_MS[match.group(2)]
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def wrk_cell(path: Path) -> str:
    """One A/B cell from a wrk ``--latency`` output."""
    text = path.read_text(errors="replace")
    rps = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if not rps:
        return "failed"
    p50 = re.search(r"^\s+50%\s+(\S+)", text, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", text, re.MULTILINE)
    cell = f"{float(rps.group(1)):.0f} ({ms(p50 and p50.group(1))} / {ms(p99 and p99.group(1))})"
    errors = re.search(r"connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if errors:
        connect, read, write, timeout = (int(x) for x in errors.groups())
        cell += f" T{timeout}" if timeout else ""
        cell += f" E{connect + read + write}" if connect + read + write else ""
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    return cell + (f" N{non_2xx.group(1)}" if non_2xx else "")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def throughput(results: Path, servers: list[str]) -> None:
    for app, title in TITLES.items():
        files = {}
        for path in (results / "throughput").glob(f"{app}.*.c*.txt"):
            server, conns = path.name[len(app) + 1 : -len(".txt")].rsplit(".c", 1)
            files[server, int(conns)] = path
        if not files:
            continue
        conns = sorted({c for _, c in files})
        rows = [
            [server] + [wrk_cell(files[server, c]) if (server, c) in files else "-" for c in conns]
            for server in servers
            if any((server, c) in files for c in conns)
        ]
        print(f"\n{title}: req/s (p50 / p99 ms); Tn = wrk timeouts, Nn = non-2xx\n")
        print(markdown(["server"] + [f"c={c}" for c in conns], rows))


def json_lines(path: Path) -> list[dict]:
    if not path.is_file():
        return []
    records = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def slowloris_rows(summary: dict | None) -> list[str]:
    """Header timeout, threads/RSS, normal request, idle keep-alive, from slowloris.py's summary."""
    if summary is None:
        return ["no result"] * 4
    if summary["closed_first"] is None:
        timeout = f"none ({summary['slow_alive']} slow conns alive at {summary['duration']:.0f} s)"
    else:
        reply = repr(summary["closed_reply"][:30]) if summary["closed_reply"] else "no response"
        timeout = (
            f"{summary['opened'] - summary['slow_alive']}/{summary['opened']} closed at "
            f"{summary['closed_first']}–{summary['closed_last']} s, {reply}"
        )
    before, peak = summary["before"], summary["peak"]
    usage = f"{peak['threads']} / {peak['rss_mb']} MB (+{peak['rss_mb'] - before['rss_mb']})"
    worst = summary["worst_normal"]
    normal = f"{worst['status']}, worst {worst['ms']:.0f} ms"
    idle = summary["idle_closed_after"]
    idle = f"{idle} s" if idle is not None else f"not closed in {summary['duration']:.0f} s"
    return [timeout, usage, normal, idle]


def robustness(results: Path, servers: list[str]) -> None:
    folder = results / "robustness"
    if not folder.is_dir():
        return
    servers = [s for s in servers if any(folder.glob(f"*.{s}.jsonl"))]
    if servers:
        names = [
            "header-read timeout (slowloris)",
            "peak threads / RSS under slowloris",
            "normal request during slowloris",
            "idle keep-alive closed after",
        ]
        columns = []
        for server in servers:
            records = json_lines(folder / f"slowloris.{server}.jsonl")
            summary = next((r["summary"] for r in records if "summary" in r), None)
            column = slowloris_rows(summary)
            malformed = json_lines(folder / f"malformed.{server}.jsonl")
            for record in malformed:
                if record["case"] not in names:
                    names.append(record["case"])
            by_case = {r["case"]: r["status"] or "no response" for r in malformed}
            column += [by_case.get(name, "-") for name in names[4:]]
            refused = next((r for r in malformed if r["status"] and r["status"] != "200"), None)
            error_body = (
                f"{refused['content_type'] or 'no content-type'} {refused['body'][:40]!r}"
                if refused
                else "-"
            )
            columns.append((column, error_body))
        names.append("error body (first refused case)")
        rows = []
        for i, name in enumerate(names):
            if i < len(names) - 1:
                row = [col[i] if i < len(col) else "-" for col, _ in columns]
            else:
                row = [body for _, body in columns]
            rows.append([name, *row])
        print("\nC. Robustness: slowloris.py (scoring app), malformed.py (trivial app)\n")
        print(markdown(["", *servers], rows))
    for kind, title in (("limits", "concurrency limits"), ("embed", "embedding in a thread")):
        paths = sorted(folder.glob(f"{kind}.*.txt"))
        if paths:
            print(f"\nC. {title}\n")
            for path in paths:
                print(path.read_text(errors="replace").rstrip())


def main() -> None:
    results, servers = Path(sys.argv[1]), sys.argv[2:]
    throughput(results, servers)
    robustness(results, servers)


if __name__ == "__main__":
    main()
