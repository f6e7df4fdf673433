"""Trivial apps (ASGI, WSGI, RSGI): read the request body, answer a fixed 12-byte body.

They measure a server's own overhead; ``scoring.py`` measures it with the project's scoring.
"""

BODY = b"hello world\n"
HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"12")]


async def lifespan(receive, send) -> None:
    """Accepts an ASGI lifespan (startup and shutdown complete at once)."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


async def read_body(receive) -> bytes:
    """The whole ASGI request body."""
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body


async def asgi(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    await read_body(receive)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})


def wsgi(environ, start_response):
    environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "12")])
    return [BODY]


class RSGIApp:
    async def __rsgi__(self, scope, proto) -> None:
        await proto()
        proto.response_bytes(200, [("content-type", "text/plain")], BODY)


rsgi = RSGIApp()
