"""Malformed-request probe: ``malformed.py PORT``.

Sends edge-case and malformed requests (request-smuggling shapes, bad chunk sizes, an unknown
method, a long request line, large headers), each on its own connection, and prints one JSON line
per case: the status line, the content type and the start of the body. Run it against the trivial
app, which answers 200 to whatever the server hands it, so a 200 means the server let it through.
"""

import json
import socket
import sys

HOST = "Host: x\r\n"
CASES = {
    "CL:5 + TE:chunked": (
        f"POST / HTTP/1.1\r\n{HOST}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
        "5\r\nhello\r\n0\r\n\r\n"
    ),
    "two different CL": (
        f"POST / HTTP/1.1\r\n{HOST}Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"
    ),
    "chunk size -1": (
        f"POST / HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n-1\r\nhello\r\n0\r\n\r\n"
    ),
    "chunk size 0x10": (
        f"POST / HTTP/1.1\r\n{HOST}Transfer-Encoding: chunked\r\n\r\n"
        "0x10\r\n0123456789abcdef\r\n0\r\n\r\n"
    ),
    "method FOO": f"FOO /x HTTP/1.1\r\n{HOST}\r\n",
    "20 kB request line": "GET /" + "a" * 20000 + f" HTTP/1.1\r\n{HOST}\r\n",
    "200 kB headers (200 fields)": (
        f"GET / HTTP/1.1\r\n{HOST}"
        + "".join(f"X-h{i}: {'v' * 990}\r\n" for i in range(200))
        + "\r\n"
    ),
}


def exchange(port: int, raw: bytes) -> bytes:
    """What the server sends back (until it closes, or the body it announced is complete)."""
    data = b""
    with socket.create_connection(("127.0.0.1", port), timeout=4) as conn:
        try:
            conn.sendall(raw)
            while True:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
                head, sep, body = data.partition(b"\r\n\r\n")
                lengths = [
                    line
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ]
                if sep and lengths and len(body) >= int(lengths[0].split(b":")[1]):
                    break
        except TimeoutError:
            data += b" <timeout>"
        except ConnectionResetError:
            data += b" <RST>"
        except OSError as error:
            data += f" <{type(error).__name__}>".encode()
    return data


def main() -> None:
    port = int(sys.argv[1])
    for name, raw in CASES.items():
        head, _, body = exchange(port, raw.encode()).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ")
        status = parts[1].decode() if lines[0].startswith(b"HTTP/") and len(parts) > 1 else None
        content_type = next(
            (
                line.split(b":", 1)[1].strip().decode()
                for line in lines[1:]
                if line.lower().startswith(b"content-type:")
            ),
            None,
        )
        record = {
            "case": name,
            "status": status,
            "status_line": lines[0].decode(errors="replace") or "<closed, no response>",
            "content_type": content_type,
            "body": body[:60].decode(errors="replace"),
        }
        print(json.dumps(record), flush=True)


if __name__ == "__main__":
    main()
