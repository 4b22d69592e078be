"""A loopback HTTP file server for the weights-hub tests: never reaches beyond 127.0.0.1.

It serves in-memory files, honours ``Range`` (unless told not to), can drop the connection part-way
through a GET, can pace its bodies, and logs every request so that a test can count them.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Request:
    """One request as the server saw it and answered it."""

    method: str
    path: str
    range: str | None
    status: int = 0
    # Counted before each write, so that a client that has read a body never sees a stale count.
    bytes_sent: int = 0


@dataclass
class Route:
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    # On the first GET, send the headers for the whole body but only this many bytes, then hang up.
    drop_first_get_after: int | None = None
    ignore_range: bool = False
    # Seconds to wait between chunks, to make a download slow enough to overlap with another.
    chunk_delay: float = 0.0
    chunk_size: int = 16 << 10
    # Called before a GET body is sent (e.g. to wait until several clients are in flight).
    before_body: Callable[[], None] | None = None
    gets: int = 0


class LoopbackServer:
    """``with LoopbackServer() as srv: srv.add("/f.bin", data); urlopen(srv.url("/f.bin"))``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        # Extra headers of a 404, e.g. the X-Error-Code by which the Hugging Face hub tells what is missing.
        self.not_found_headers: dict[str, str] = {}
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.02},  # the default 0.5 s would make every shutdown() slow
            name="loopback-http",
            daemon=True,
        )

    def __enter__(self) -> LoopbackServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def url(self, path: str) -> str:
        return self.base_url + path

    def add(self, path: str, body: bytes, **options: object) -> Route:
        route = Route(body=body, **options)  # type: ignore[arg-type]
        self.routes[path] = route
        return route

    def log(self, *, method: str | None = None, path: str | None = None) -> list[Request]:
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """``bytes=N-`` or ``bytes=N-M`` → inclusive (start, end); None if unsatisfiable or unsupported."""
    unit, _, span = value.partition("=")
    start_s, _, end_s = span.partition("-")
    if unit.strip() != "bytes" or not start_s.strip().isdigit():
        return None
    start = int(start_s)
    end = int(end_s) if end_s.strip().isdigit() else size - 1
    if start >= size or end < start:
        return None
    return start, min(end, size - 1)


def _make_handler(server: LoopbackServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(head=True)

        def do_GET(self) -> None:
            self._serve(head=False)

        def _serve(self, *, head: bool) -> None:
            path = self.path.split("?", 1)[0]
            record = Request(self.command, path, self.headers.get("Range"))
            # Logged before answering: a client must never get its response before the log has it.
            server._record(record)
            self._answer(path, record, head=head)

        def _answer(self, path: str, record: Request, *, head: bool) -> None:
            route = server.routes.get(path)
            if route is None:
                record.status = 404
                self.send_response(404)
                self.send_header("Content-Length", "0")
                for name, value in server.not_found_headers.items():
                    self.send_header(name, value)
                self.end_headers()
                return
            body = route.body
            status, start, end = 200, 0, len(body) - 1
            if record.range and not route.ignore_range:
                span = _parse_range(record.range, len(body))
                if span is None:
                    record.status = 416
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(body)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                status, (start, end) = 206, span
            record.status = status
            self.send_response(status)
            self.send_header("Content-Length", str(end - start + 1))
            self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
            for name, value in route.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if head:
                return

            route.gets += 1
            limit = end + 1
            drop = route.gets == 1 and route.drop_first_get_after is not None
            if drop:
                limit = min(limit, start + int(route.drop_first_get_after or 0))
            if route.before_body is not None:
                route.before_body()
            pos = start
            while pos < limit:
                chunk = body[pos : min(pos + route.chunk_size, limit)]
                record.bytes_sent += len(chunk)
                self.wfile.write(chunk)
                self.wfile.flush()
                pos += len(chunk)
                if route.chunk_delay:
                    time.sleep(route.chunk_delay)
            if drop:
                # Hang up without sending the rest: the client sees a short body on a dead socket.
                self.close_connection = True
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

    return Handler


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_when_told(spec: object, cache_dir: str, ready_dir: str, name: str, out: str) -> None:
    """Subprocess body for the concurrency test: announce itself, download, write the result path.

    Lives here (not in the test module) so that a ``spawn`` child can import it by name.
    """
    from vlzoo.core.weights.hub import download

    Path(ready_dir, name).touch()
    path = download(spec, cache_dir=Path(cache_dir), progress=False)  # type: ignore[arg-type]
    Path(out).write_text(str(path))
