# Server command lines, start/stop and the granian environment; sourced by run.sh, which sets
# HERE (this directory), ROOT (the project), RESULTS and exports MODEL_DIR.
# shellcheck shell=bash

V=$ROOT/.venv/bin
GRANIAN_VENV=${GRANIAN_VENV:-$ROOT/.venv-granian}
G=$GRANIAN_VENV/bin
GRANIAN_VERSION=2.8.9
ALL_SERVERS="uv-httptools uv-h11 granian-asgi granian-rsgi gunicorn-gthread gunicorn-uvworker gunicorn-asgi"
ROW='L,298.1,308.6,1551,42.8,0'

# server_cmd NAME MODULE PORT: sets CMD to the command line (1 worker each, access log off).
server_cmd() {
  local name=$1 mod=$2 port=$3
  case $name in
    uv-httptools) CMD=("$V/uvicorn" "$mod:asgi" --host 127.0.0.1 --port "$port" --http httptools
                  --loop uvloop --workers 1 --no-access-log --log-level warning) ;;
    uv-h11) CMD=("$V/uvicorn" "$mod:asgi" --host 127.0.0.1 --port "$port" --http h11 --loop uvloop
            --workers 1 --no-access-log --log-level warning) ;;
    granian-asgi) CMD=("$G/granian" --interface asgi --host 127.0.0.1 --port "$port" --workers 1
                  --log-level warning "$mod:asgi") ;;
    granian-rsgi) CMD=("$G/granian" --interface rsgi --host 127.0.0.1 --port "$port" --workers 1
                  --log-level warning "$mod:rsgi") ;;
    gunicorn-gthread) CMD=("$V/gunicorn" -k gthread -w 1 --threads 32 -b "127.0.0.1:$port"
                      --log-level warning "$mod:wsgi") ;;
    gunicorn-uvworker) CMD=("$V/gunicorn" -k uvicorn.workers.UvicornWorker -w 1
                       -b "127.0.0.1:$port" --log-level warning "$mod:asgi") ;;
    gunicorn-asgi) CMD=("$V/gunicorn" -k asgi -w 1 -b "127.0.0.1:$port" --log-level warning
                   "$mod:asgi") ;;
    *) echo "unknown server $name (known: $ALL_SERVERS)" >&2; return 1 ;;
  esac
}

# free_ports N: N distinct free TCP ports on 127.0.0.1, one a line.
free_ports() {
  "$V/python" - "$1" <<'PY'
import socket, sys
socks = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in socks:
    s.bind(("127.0.0.1", 0))
print("\n".join(str(s.getsockname()[1]) for s in socks))
PY
}

# start_cmd LOG PORT CMD...: starts CMD in its own session (cwd: this directory), sets SPID and
# waits until it answers a scoring request on PORT.
start_cmd() {
  local log=$1 port=$2
  shift 2
  ( cd "$HERE" && exec setsid "$@" ) >"$log" 2>&1 &
  SPID=$!
  echo "$SPID" >>"$RESULTS/.server-pids"
  for _ in $(seq 150); do
    curl -s -o /dev/null --max-time 2 -X POST -H 'Content-Type: text/csv' --data "$ROW" \
      "http://127.0.0.1:$port/" && return 0
    kill -0 "$SPID" 2>/dev/null || break
    sleep 0.2
  done
  echo "failed to start: $* (log: $log)" >&2
  stop_server
  return 1
}

# start_server NAME MODULE PORT: one of ALL_SERVERS serving MODULE (trivial or scoring).
start_server() {
  server_cmd "$1" "$2" "$3" || return 1
  start_cmd "$RESULTS/server.$1.$2.log" "$3" "${CMD[@]}"
}

# stop_server: SIGTERM to the server's session (master and workers), SIGKILL after 3 s.
stop_server() {
  kill -TERM -- "-$SPID" 2>/dev/null
  for _ in $(seq 30); do
    ps -o stat= -s "$SPID" 2>/dev/null | grep -qv '^Z' || break
    sleep 0.1
  done
  kill -KILL -- "-$SPID" 2>/dev/null
  wait "$SPID" 2>/dev/null
  return 0
}

# ensure_granian_venv: $GRANIAN_VENV with granian==$GRANIAN_VERSION (python3.11 -m venv + pip),
# the project's src and .venv site-packages appended to its sys.path by a .pth file (so granian's
# own packages come first; the project is not installed there: pip would resolve all its deps).
ensure_granian_venv() {
  if ! "$G/python" -c "import granian, sys; sys.exit(granian.__version__ != '$GRANIAN_VERSION')" \
      2>/dev/null; then
    echo "creating $GRANIAN_VENV (granian==$GRANIAN_VERSION)" >&2
    "${PYTHON:-python3.11}" -m venv "$GRANIAN_VENV" &&
      "$G/python" -m pip install --quiet "granian==$GRANIAN_VERSION" || return 1
  fi
  local purelib='import sysconfig; print(sysconfig.get_paths()["purelib"])' own project
  own=$("$G/python" -c "$purelib") && project=$("$V/python" -c "$purelib") || return 1
  printf '%s\n%s\n' "$ROOT/src" "$project" >"$own/zz_project_venv.pth"
  "$G/python" -c 'import granian, predictive_maintenance, pandas' || {
    echo "$GRANIAN_VENV cannot import the project (same Python as .venv needed)" >&2
    return 1
  }
}
