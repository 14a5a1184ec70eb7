"""A local HTTP server on 127.0.0.1 that records every request and answers from a script:
an application's back-channel logout URI, a client's jwks_uri, a static page.

``with Webhook() as hook:`` then use ``hook.url("/path")``. ``hook.requests`` lists
:class:`Seen` (method, path, headers, body, form). ``hook.answer(Answer(500), ...)``
queues answers for the next requests (then ``hook.default`` again); ``Answer("hang")``
sleeps ``hang_seconds`` before answering. ``hook.wait_for(n)`` blocks until *n* requests
arrived.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs


@dataclass
class Answer:
    status: int | str = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


class Webhook:
    def __init__(self, default: Answer | None = None, hang_seconds: float = 4.0):
        self.default = default or Answer(200)
        self.hang_seconds = hang_seconds
        self.requests: list[Seen] = []
        self.routes: dict[str, Answer] = {}
        self._queue: list[Answer] = []
        self._cond = threading.Condition()
        hook = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep test output quiet
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, dict(self.headers.items()), body)
                with hook._cond:
                    hook.requests.append(seen)
                    answer = (
                        hook._queue.pop(0)
                        if hook._queue
                        else hook.routes.get(self.path.split("?")[0], hook.default)
                    )
                    hook._cond.notify_all()
                if answer.status == "hang":
                    time.sleep(hook.hang_seconds)
                    answer = Answer(200, b"late")
                self.send_response(int(answer.status))
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    self.wfile.write(answer.body)

            do_GET = do_POST = do_OPTIONS = _handle  # noqa: N815

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *answers: Answer) -> None:
        with self._cond:
            self._queue.extend(answers)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Seen]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while len(self.requests) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"expected {count} requests, got {len(self.requests)} in {timeout} s"
                    )
                self._cond.wait(remaining)
            return list(self.requests)

    def __enter__(self) -> Webhook:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(timeout=5)
