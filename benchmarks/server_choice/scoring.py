"""Scoring apps (ASGI, WSGI, RSGI): parse the CSV/JSON body and score it with the project's model.

The bare serving path (``check_content_type`` -> ``parse_readings`` -> ``predict_fn`` ->
``output_fn``), without the project's HTTP layer, so that only the server differs. The model
directory (an extracted ``model.tar.gz``) is read from ``$MODEL_DIR`` at import.
"""

import os

from trivial import lifespan, read_body

from predictive_maintenance.serving.inference import output_fn, predict_fn, readings_frame
from predictive_maintenance.serving.requests import check_content_type, parse_readings
from predictive_maintenance.serving.server import load_model_dir

MODEL = load_model_dir(os.environ["MODEL_DIR"])


def score(body: bytes, content_type: str | None) -> tuple[bytes, str]:
    """Scores of the rows in ``body`` as ``text/csv`` and that content type."""
    media_type = check_content_type(content_type)
    scores = predict_fn(readings_frame(parse_readings(body, media_type)), MODEL)
    return output_fn(scores, "text/csv")


async def asgi(scope, receive, send) -> None:
    if scope["type"] == "lifespan":
        await lifespan(receive, send)
        return
    if scope["type"] != "http":
        return
    body = await read_body(receive)
    content_type = None
    for name, value in scope["headers"]:
        if name == b"content-type":
            content_type = value.decode("latin-1")
    out, media_type = score(body, content_type)
    headers = [(b"content-type", media_type.encode()), (b"content-length", b"%d" % len(out))]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": out})


def wsgi(environ, start_response):
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    out, media_type = score(body, environ.get("CONTENT_TYPE"))
    start_response("200 OK", [("Content-Type", media_type), ("Content-Length", str(len(out)))])
    return [out]


class RSGIApp:
    async def __rsgi__(self, scope, proto) -> None:
        body = await proto()
        out, media_type = score(body, scope.headers.get("content-type"))
        proto.response_bytes(200, [("content-type", media_type)], out)


rsgi = RSGIApp()
