#!/bin/bash
# HTTP servers for the scoring endpoint: throughput (tables A, B) and robustness (table C).
# See README.md beside this file. Settings (environment):
#   PARTS="throughput robustness"  which parts to run
#   SERVERS="uv-httptools uv-h11 granian-asgi granian-rsgi gunicorn-gthread gunicorn-uvworker gunicorn-asgi"
#   DURATION=5                     wrk seconds per point (and per concurrency-limit run)
#   TRIVIAL_CONNS="1 16 64 256"    SCORING_CONNS="1 16 64"
#   SLOWLORIS_SECONDS=40           slowloris duration (granian's header timeout is 30 s)
#   RESULTS_DIR=<new temp dir>     raw outputs; must not be a tracked part of the repo
#   GRANIAN_VENV=<root>/.venv-granian, PYTHON=python3.11 (to create it)
set -u
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
PARTS=${PARTS:-throughput robustness}
DURATION=${DURATION:-5}
TRIVIAL_CONNS=${TRIVIAL_CONNS:-1 16 64 256}
SCORING_CONNS=${SCORING_CONNS:-1 16 64}
SLOWLORIS_SECONDS=${SLOWLORIS_SECONDS:-40}
RESULTS=$(realpath -m "${RESULTS_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/server_choice.XXXXXX")}")
case $RESULTS/ in
  "$ROOT"/*) git -C "$ROOT" check-ignore -q "$RESULTS" || {
    echo "RESULTS_DIR $RESULTS is inside the repo and not ignored by git" >&2; exit 2; } ;;
esac
mkdir -p "$RESULTS/throughput" "$RESULTS/robustness" || exit 2
# shellcheck source=servers.sh
source "$HERE/servers.sh"
SERVERS=${SERVERS:-$ALL_SERVERS}

for tool in wrk curl; do
  command -v "$tool" >/dev/null || { echo "$tool is needed (apt-get install $tool)" >&2; exit 2; }
done
[ -x "$V/python" ] || { echo "no $V/python: run make install" >&2; exit 2; }
ARCHIVE=$ROOT/data/06_models/model.tar.gz
[ -f "$ARCHIVE" ] || { echo "no $ARCHIVE: run make run" >&2; exit 2; }

MODEL_DIR=$(mktemp -d "${TMPDIR:-/tmp}/server_choice_model.XXXXXX")
export MODEL_DIR
cleanup() {
  local pid
  if [ -f "$RESULTS/.server-pids" ]; then
    while read -r pid; do kill -KILL -- "-$pid" 2>/dev/null; done <"$RESULTS/.server-pids"
    rm -f "$RESULTS/.server-pids"
  fi
  rm -rf "$MODEL_DIR"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
"$V/python" - "$ARCHIVE" "$MODEL_DIR" <<'PY' || exit 2
import sys
from pathlib import Path

from predictive_maintenance.serving.package import extract_model_archive

extract_model_archive(Path(sys.argv[1]).read_bytes(), Path(sys.argv[2]))
PY

if [[ " $SERVERS " == *" granian-"* ]] && ! ensure_granian_venv; then
  echo "no granian environment: skipping the granian servers" >&2
  SERVERS=$(echo "$SERVERS" | tr ' ' '\n' | grep -v '^granian-' | paste -sd' ')
fi
has() { [[ " $SERVERS " == *" $1"* ]]; }  # has PREFIX: a selected server starts with PREFIX

{
  echo "date: $(date -u +%F), cores: $(nproc), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2)"
  "$V/python" -c 'import sys, uvicorn, gunicorn; print(f"python {sys.version.split()[0]}, uvicorn {uvicorn.__version__}, gunicorn {gunicorn.__version__}")' 2>&1
  has granian- && echo "granian $("$G/python" -c 'import granian; print(granian.__version__)')"
  echo "servers: $SERVERS; results: $RESULTS"
} | tee "$RESULTS/versions.txt"

# bench MODULE "CONNS" SERVER...: wrk POST of one CSV row, per server and concurrency.
bench() {
  local mod=$1 conns=$2 port c t out
  shift 2
  port=$(free_ports 1)
  for s in "$@"; do
    start_server "$s" "$mod" "$port" || continue
    wrk -t1 -c4 -d1s -s "$HERE/post.lua" "http://127.0.0.1:$port/" >/dev/null  # warm-up
    for c in $conns; do
      t=2; [ "$c" -lt 2 ] && t=1
      out=$RESULTS/throughput/$mod.$s.c$c.txt
      wrk -t$t -c"$c" -d"${DURATION}s" --latency -s "$HERE/post.lua" "http://127.0.0.1:$port/" \
        >"$out" 2>&1
      echo "$mod $s c=$c: $(awk '/Requests\/sec/{print $2}' "$out") req/s"
    done
    stop_server
  done
}

# probe_all MODULE PROBE: each server in parallel on its own port, PROBE run as "$PROBE PORT".
probe_all() {
  local mod=$1 probe=$2 ports i=0 s
  # shellcheck disable=SC2086
  mapfile -t ports < <(free_ports "$(echo $SERVERS | wc -w)")
  for s in $SERVERS; do
    (
      port=${ports[$i]}
      start_server "$s" "$mod" "$port" || exit 0
      sleep 1
      "$probe" "$s" "$port"
      stop_server
    ) &
    i=$((i + 1))
  done
  wait
}
slowloris() {  # SERVER PORT
  "$V/python" "$HERE/slowloris.py" "$2" "$(pgrep -s "$SPID" | paste -sd,)" "$SLOWLORIS_SECONDS" \
    >"$RESULTS/robustness/slowloris.$1.jsonl" 2>&1
}
malformed() {  # SERVER PORT
  "$V/python" "$HERE/malformed.py" "$2" >"$RESULTS/robustness/malformed.$1.jsonl" 2>&1
}

# limit NAME CMD...: what happens above a concurrency limit (wrk -c16 on the scoring app).
limit() {
  local name=$1 port out=$RESULTS/robustness/limits.$1.txt
  shift
  port=$(free_ports 1)
  start_cmd "$RESULTS/server.limits.$name.log" "$port" "${@/PORT/$port}" || return 0
  {
    echo "== $name: wrk -t2 -c16 -d${DURATION}s"
    wrk -t2 -c16 -d"${DURATION}s" --latency -s "$HERE/post.lua" "http://127.0.0.1:$port/" |
      grep -E "Requests/sec| 50%| 99%|Non-2xx|Socket"
  } >"$out" 2>&1
  stop_server
}

if [[ " $PARTS " == *" throughput "* ]]; then
  echo "== A/B: throughput, ${DURATION}s per point"
  # shellcheck disable=SC2086
  bench trivial "$TRIVIAL_CONNS" $SERVERS
  # shellcheck disable=SC2086
  bench scoring "$SCORING_CONNS" $SERVERS
fi

if [[ " $PARTS " == *" robustness "* ]]; then
  echo "== C: robustness (slowloris ${SLOWLORIS_SECONDS}s, all servers at once)"
  probe_all scoring slowloris
  probe_all trivial malformed
  echo "== C: concurrency limits, embedding"
  has uv-httptools && limit uvicorn-limit-concurrency-4 "$V/uvicorn" scoring:asgi --host 127.0.0.1 \
    --port PORT --limit-concurrency 4 --no-access-log --log-level warning
  has granian-asgi && limit granian-backpressure-4 "$G/granian" --interface asgi --host 127.0.0.1 \
    --port PORT --backpressure 4 --log-level warning scoring:asgi
  has gunicorn-gthread && limit gunicorn-gthread-worker-connections-8 "$V/gunicorn" -k gthread \
    --threads 4 --worker-connections 8 -b 127.0.0.1:PORT --log-level warning scoring:wsgi
  for which in uvicorn granian gunicorn; do
    case $which in
      uvicorn) has uv- || continue; py=$V/python ;;
      granian) has granian- || continue; py=$G/python ;;
      gunicorn) has gunicorn- || continue; py=$V/python ;;
    esac
    timeout 60 "$py" "$HERE/embed_check.py" "$which" "$(free_ports 1)" \
      >"$RESULTS/robustness/embed.$which.txt" 2>"$RESULTS/embed.$which.log"
  done
fi

# shellcheck disable=SC2086
"$V/python" "$HERE/tables.py" "$RESULTS" $SERVERS | tee "$RESULTS/tables.md"
echo
echo "raw outputs: $RESULTS"
