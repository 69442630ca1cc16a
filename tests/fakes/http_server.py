"""A minimal HTTP/1.1 server on asyncio streams, run in a daemon thread with its own loop.

Only what a loopback LLM provider needs, but done the way real servers do it, because the code
under test is an httpx client that notices the difference:

- persistent connections (HTTP/1.1 keep-alive; ``Connection: close`` and HTTP/1.0 end them);
- request bodies framed by ``Content-Length`` (chunked request bodies are refused with 501);
- responses either with ``Content-Length`` or streamed with ``Transfer-Encoding: chunked``;
- client disconnects are seen *while the handler is idle* (sleeping, hanging), because a watcher
  task keeps reading the socket for EOF during every response. Bytes that arrive meanwhile (a
  pipelined next request) are kept in the connection's own buffer, so nothing is lost.

The handler is an ``async`` function receiving an :class:`Exchange` (one request and its
response). :class:`LoopbackServer` owns the thread, the loop and every open connection; ``stop()``
aborts the connections, so a handler waiting on a hung request ends at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus

_MAX_HEADER_BYTES = 64 * 1024
_READ_SIZE = 64 * 1024


class HttpError(Exception):
    """The client sent something this server cannot parse; answered with ``status``, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class HttpRequest:
    method: str
    path: str  # the request target without its query string
    headers: dict[str, str]  # lower-cased names; a repeated header keeps its last value
    body: bytes
    keep_alive: bool


class _Connection:
    """One client socket: a byte buffer fed by ``reader`` and the writer for responses."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.buffer = bytearray()
        self.exchange: Exchange | None = None  # the request being answered, if any

    async def fill(self) -> bool:
        """Read more bytes into the buffer; False at EOF or when the peer reset the connection."""
        try:
            data = await self.reader.read(_READ_SIZE)
        except ConnectionError:
            return False
        self.buffer += data
        return bool(data)

    async def watch_eof(self, gone: asyncio.Event) -> None:
        """Run during a response: set ``gone`` when the client closes its end."""
        while await self.fill():
            pass
        gone.set()

    async def read_request(self) -> HttpRequest | None:
        """The next request, or None when the client closed the connection between requests."""
        while (end := self.buffer.find(b"\r\n\r\n")) < 0:
            if len(self.buffer) > _MAX_HEADER_BYTES:
                raise HttpError(431, "request headers too large")
            if not await self.fill():
                return None
        head = bytes(self.buffer[:end]).decode("latin-1")
        del self.buffer[: end + 4]
        request_line, *header_lines = head.split("\r\n")
        try:
            method, target, version = request_line.split(" ")
        except ValueError:
            raise HttpError(400, f"malformed request line {request_line!r}") from None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                raise HttpError(400, f"malformed header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            raise HttpError(501, "chunked request bodies are not supported")
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            raise HttpError(400, "bad Content-Length") from None
        while len(self.buffer) < length:
            if not await self.fill():
                return None
        body = bytes(self.buffer[:length])
        del self.buffer[:length]
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        return HttpRequest(method, target.partition("?")[0], headers, body, keep_alive)


def _head(status: int, headers: dict[str, str]) -> bytes:
    # A test may inject any status, including ones without a standard reason phrase.
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Status"
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    # An empty chunk would end the body, so empty data frames to nothing.
    return f"{len(data):x}\r\n".encode() + data + b"\r\n" if data else b""


class Exchange:
    """One request and its response. Every send returns False once the client has gone."""

    def __init__(self, connection: _Connection, request: HttpRequest) -> None:
        self.request = request
        self.gone = asyncio.Event()  # set by the connection's EOF watcher
        self.dropped = False  # the server closed the connection mid-response on purpose
        self.started = False  # the status line went out: no other response can follow
        self._connection = connection

    async def _write(self, data: bytes) -> bool:
        """True when ``data`` went out; a client closing right after reading it still counts."""
        if self.gone.is_set():
            return False
        try:
            self._connection.writer.write(data)
            await self._connection.writer.drain()
        except ConnectionError:
            self.gone.set()
            return False
        # Yield once even when drain() did not, so the EOF watcher runs between fast writes.
        await asyncio.sleep(0)
        return True

    async def pause(self, seconds: float) -> bool:
        """Sleep, but wake early when the client disconnects; False if it did."""
        if seconds > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return not self.gone.is_set()

    async def wait_gone(self) -> None:
        """Send nothing until the client disconnects (or the server stops)."""
        await self.gone.wait()

    async def send(
        self,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
        *,
        cut_at: int | None = None,
    ) -> bool:
        """A whole response with Content-Length; ``cut_at`` sends only that many body bytes and
        then drops the connection (a response truncated in transit)."""
        head = {"Content-Type": content_type, "Content-Length": str(len(body)), **(headers or {})}
        if not self.request.keep_alive:
            head["Connection"] = "close"
        self.started = True
        if cut_at is None:
            return await self._write(_head(status, head) + body)
        await self._write(_head(status, head) + body[:cut_at])
        await self.drop()
        return False

    async def start_stream(
        self, status: int, content_type: str, headers: dict[str, str] | None = None
    ) -> bool:
        head = {"Content-Type": content_type, "Transfer-Encoding": "chunked", **(headers or {})}
        if not self.request.keep_alive:
            head["Connection"] = "close"
        self.started = True
        return await self._write(_head(status, head))

    async def send_chunk(self, data: bytes) -> bool:
        """One chunk of a chunked body."""
        return await self._write(_chunk(data))

    async def end_stream(self, last: bytes = b"") -> bool:
        """The ``last`` chunk and the end of the chunked body, in one write."""
        return await self._write(_chunk(last) + b"0\r\n\r\n")

    async def drop(self) -> None:
        """Close the connection without finishing the response; what was written is flushed."""
        self.dropped = True
        self._connection.writer.close()
        with contextlib.suppress(ConnectionError):
            await self._connection.writer.wait_closed()


Handler = Callable[[Exchange], Awaitable[None]]


class LoopbackServer:
    """Serves ``handler`` on ``host:port`` (0 = ephemeral) from a background daemon thread."""

    def __init__(self, handler: Handler, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self._handler = handler
        self._host = host
        self._requested_port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[None], _Connection] = {}
        self.port = 0

    @property
    def running(self) -> bool:
        return self._thread is not None

    @property
    def open_connections(self) -> int:
        """Client connections open now (a keep-alive one waiting for its next request too)."""
        return len(self._connections)

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fake-provider", daemon=True)
        thread.start()
        # Bind from inside the server's loop: the caller may itself be running an event loop
        # (an asyncio test), so it must not drive this one. A bind error surfaces here.
        bind = asyncio.start_server(self._serve_connection, self._host, self._requested_port)
        try:
            self._server = asyncio.run_coroutine_threadsafe(bind, loop).result(timeout=10)
        except BaseException:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()
            loop.close()
            raise
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop, self._thread = loop, thread

    def call_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the server's loop (from any thread); nothing when not running."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(callback)

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()
        self._loop = self._thread = self._server = None

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        # Aborting the sockets ends every handler: reads see EOF, so hung and sleeping handlers
        # wake through their Exchange's ``gone`` event and writes fail. Marked as dropped, these
        # responses are not mistaken for the client leaving.
        for connection in self._connections.values():
            if connection.exchange is not None:
                connection.exchange.dropped = True
            connection.writer.transport.abort()
        tasks = set(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=2)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)

    async def _serve_connection(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _Connection(reader, writer)
        self._connections[task] = connection
        try:
            await self._serve_requests(connection)
        finally:
            del self._connections[task]
            writer.close()

    async def _serve_requests(self, connection: _Connection) -> None:
        while True:
            try:
                request = await connection.read_request()
            except HttpError as exc:
                body = json.dumps({"error": str(exc)}).encode()
                bad = HttpRequest("", "", {}, b"", keep_alive=False)
                await Exchange(connection, bad).send(exc.status, body, "application/json")
                return
            if request is None:
                return
            exchange = connection.exchange = Exchange(connection, request)
            watcher = asyncio.create_task(connection.watch_eof(exchange.gone))
            try:
                await self._handler(exchange)
            finally:
                watcher.cancel()
                await asyncio.wait([watcher])  # unlike awaiting it, never raises its cancellation
                connection.exchange = None
            if exchange.gone.is_set() or exchange.dropped or not request.keep_alive:
                return
