"""A local HTTP server speaking the Twilio REST API shape, recording every request.

``with Gateway() as gw:`` then point ``[delivery] twilio_base_url`` at ``gw.url``.
``gw.calls`` lists :class:`Call` (method, path, form fields, basic-auth user and
password). ``gw.answer(503, 201)`` queues statuses for the next requests (then 201
again); ``"timeout"`` in the queue makes that request hang past the client's timeout.
"""

from __future__ import annotations

import base64
import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

SID = "AC" + "0" * 32
TOKEN = "test-auth-token"
FROM = "+12025550100"


@dataclass
class Call:
    method: str
    path: str
    form: dict[str, str]
    user: str
    password: str

    @property
    def resource(self) -> str:
        return self.path.rsplit("/", 1)[-1]

    def code(self) -> str:
        text = self.form.get("Body") or self.form.get("Twiml") or ""
        m = re.search(r"\b(\d{6})\b", text) or re.search(
            r"(\d), (\d), (\d), (\d), (\d), (\d)", text
        )
        assert m, text
        return m.group(1) if m.lastindex == 1 else "".join(m.groups())


class Gateway:
    def __init__(self, hang_seconds: float = 3.0):
        self.calls: list[Call] = []
        self._queue: list[int | str] = []
        self._lock = threading.Lock()
        self.hang_seconds = hang_seconds
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output quiet
                pass

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode()
                form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
                user, password = "", ""
                auth = self.headers.get("Authorization", "")
                if auth.startswith("Basic "):
                    user, _, password = base64.b64decode(auth[6:]).decode().partition(":")
                with gateway._lock:
                    gateway.calls.append(Call("POST", self.path, form, user, password))
                    answer = gateway._queue.pop(0) if gateway._queue else 201
                if answer == "timeout":
                    time.sleep(gateway.hang_seconds)
                    answer = 201
                if user != SID or password != TOKEN:
                    answer = 401
                elif not re.fullmatch(
                    rf"/2010-04-01/Accounts/{SID}/(Messages|Calls)\.json", self.path
                ):
                    answer = 404
                if answer == 201:
                    payload = {"sid": "SM" + "1" * 32, "status": "queued", "to": form.get("To")}
                else:
                    payload = {
                        "code": 21211 if answer == 400 else 20500,
                        "status": answer,
                        "message": "test gateway answer",
                    }
                data = json.dumps(payload).encode()
                try:
                    self.send_response(int(answer))
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, *statuses: int | str) -> None:
        with self._lock:
            self._queue.extend(statuses)

    def of(self, resource: str) -> list[Call]:
        return [c for c in self.calls if c.resource == f"{resource}.json"]

    def __enter__(self) -> Gateway:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
