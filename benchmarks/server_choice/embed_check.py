"""Can a server run inside a thread of this process? ``embed_check.py SERVER PORT``.

SERVER: uvicorn, granian or gunicorn. Starts the trivial app in a thread, makes one request,
stops it, and prints one line. granian needs the benchmark's granian environment (``run.sh`` runs
this with that environment's Python for granian).
"""
# ruff: noqa: PLC0415 (each server is imported only when it is the one checked)

import asyncio
import sys
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import trivial


def request(port: int) -> bytes:
    url = f"http://127.0.0.1:{port}/"
    with urllib.request.urlopen(urllib.request.Request(url, data=b"x"), timeout=5) as response:
        return response.read()


def wait_up(port: int) -> bytes:
    for _ in range(50):
        try:
            return request(port)
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("the server did not come up")


def check_uvicorn(port: int) -> str:
    import uvicorn

    config = uvicorn.Config(trivial.asgi, host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    answer = wait_up(port)
    server.should_exit = True
    thread.join(10)
    stopped = not thread.is_alive()
    return f"yes: uvicorn.Server(Config(app)).run() in a thread: {answer!r}, stopped: {stopped}"


def check_granian(port: int) -> str:
    from granian.constants import Interfaces
    from granian.server.embed import Server

    holder = {}

    def run() -> None:
        async def main() -> None:
            server = Server(trivial.asgi, address="127.0.0.1", port=port, interface=Interfaces.ASGI)
            holder["server"], holder["loop"] = server, asyncio.get_running_loop()
            await server.serve()

        asyncio.run(main())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    answer = wait_up(port)
    holder["loop"].call_soon_threadsafe(holder["server"].stop)
    thread.join(10)
    stopped = not thread.is_alive()
    return f"yes: granian.server.embed.Server in a thread's loop: {answer!r}, stopped: {stopped}"


def check_gunicorn(port: int) -> str:
    from gunicorn.app.base import BaseApplication

    class App(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"127.0.0.1:{port}")
            self.cfg.set("worker_class", "gthread")
            self.cfg.set("workers", 1)

        def load(self):
            return trivial.wsgi

    errors = []

    def run() -> None:
        try:
            App().run()
        except BaseException as error:  # SystemExit too: the arbiter exits
            errors.append(repr(error))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(5)
    if errors:
        return f"no: the arbiter in a thread failed with {errors[0]}"
    return f"unclear: the arbiter thread is {'alive' if thread.is_alive() else 'gone'}, no error"


CHECKS = {"uvicorn": check_uvicorn, "granian": check_granian, "gunicorn": check_gunicorn}

if __name__ == "__main__":
    which, port = sys.argv[1], int(sys.argv[2])
    try:
        print(f"{which}: {CHECKS[which](port)}")
    except Exception as error:  # reported, not raised: a finding
        print(f"{which}: no: {type(error).__name__}: {error}")
