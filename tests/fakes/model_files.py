"""A loopback HTTP server serving one model file's bytes, as Hugging Face's CDN does: ``GET``
with ``Range`` (206), and faults to inject: the connection cut after some bytes (once), a
server that ignores ``Range``. It records each request's path and ``Range`` header. Requests
sent to it as a proxy (an absolute URI) are served the same way, so it also stands for an HTTP
proxy from the environment."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType


@dataclass
class Seen:
    path: str
    range: str | None


@dataclass
class ModelFileServer:
    payload: bytes
    cut_after: int | None = None  # bytes sent before the first response is cut
    ignore_range: bool = False
    seen: list[Seen] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> ModelFileServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                owner.seen.append(Seen(self.path, self.headers.get("Range")))
                start = 0
                match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
                if match and not owner.ignore_range:
                    start = int(match.group(1))
                    if start >= len(owner.payload):
                        self.send_response(416)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    last = len(owner.payload) - 1
                    self.send_header("Content-Range", f"bytes {start}-{last}/{len(owner.payload)}")
                else:
                    self.send_response(200)
                body = owner.payload[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut, owner.cut_after = owner.cut_after, None
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()
