"""A hostile provider for the key tests: a real HTTP server on 127.0.0.1 that records what it
was sent and then either redirects every request elsewhere (``redirect_to``) or rejects it
with an error body echoing the key it was sent, whole or in part (``echo``)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]


@dataclass
class HostileProvider:
    status: int = 307
    redirect_to: str | None = None  # origin the Location header points at (path kept)
    echo: Callable[[str], str] | None = None  # the sent key -> the error message
    seen: list[Seen] = field(default_factory=list)

    def __enter__(self) -> HostileProvider:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                if length:
                    self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.seen.append(Seen(self.command, self.path, headers))
                if owner.redirect_to is not None:
                    self.send_response(owner.status)
                    self.send_header("Location", owner.redirect_to + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                sent = headers.get("x-api-key") or headers.get("authorization", "")
                key = sent.removeprefix("Bearer ")
                message = owner.echo(key) if owner.echo is not None else "no"
                body = json.dumps({"error": {"message": message, "type": "invalid_request_error"}})
                data = body.encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        # A short poll: shutdown() waits for the loop to notice, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"
