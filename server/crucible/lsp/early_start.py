"""The stdio server's first half second: ``initialize`` answered while the server loads.

A cold start spends ~0.5 s importing pygls, lsprotocol (which builds ~10^3 attrs classes) and
Crucible's services; an editor waits for the ``initialize`` answer before it sends anything
else. So the stdio server starts here, with the standard library and Crucible's own stdlib-only
pieces (``framing.py``, ``jsonrpc.py``, ``capabilities.py``):

1. a thread imports the server (``crucible.app``) with a lighter garbage collector, then
   freezes what it built so that no later collection scans it (``settle_startup_objects``);
2. meanwhile the event loop reads frames from stdin with the same ``FrameReader`` the server
   uses, and queues every one, in order, untouched;
3. the first ``initialize`` request is answered at once, from ``capabilities.py`` (the same
   answer pygls would give that client; a unit test holds them equal);
4. once the import is done the server is built and takes over the same reader: it handles the
   queued frames first, in order, as if they had just arrived, then the stream. The queued
   ``initialize`` runs pygls's and Crucible's handlers with the real params (workspace,
   configuration, the parent-process watch); its answer, the client's second, goes nowhere
   (``CrucibleProtocol.answered_elsewhere``), and it is compared with the early one: a
   difference is logged as an error. The frames after it wait until it is handled, as they
   would have with a client waiting for the answer.

Every frame therefore gets what the server alone would give it, later: requests before the
handover are answered after it (a request before ``initialize`` gets -32002, malformed frames
their parse errors, ``shutdown`` its null), ``exit`` or the end of input stops the reading and
ends the server once it has handled what came before. The only answer that can differ is the
early one, and only when the server would have refused ``initialize``: its params are checked
here for what pygls requires (``processId`` and ``capabilities``), and an ``initialize`` that
does not pass is left to the server. Only stdio starts here; ``--tcp`` serves one client
later, and takes the plain path (``CrucibleLanguageServer.serve_tcp``).

``CRUCIBLE_EARLY_START=0`` in the environment turns this off (the server is loaded first, then
serves), for comparison and as a way out.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crucible.lsp import jsonrpc
from crucible.lsp.capabilities import early_capabilities, initialize_result
from crucible.lsp.framing import MAX_MESSAGE_BYTES, Frame, FrameError, FrameReader
from crucible.lsp.stdio import stdin_stream

__all__ = ["EarlyFrames", "early_capabilities", "encode_frame", "load_server", "serve_stdio"]

if TYPE_CHECKING:
    from crucible.lsp.protocol import CrucibleProtocol
    from crucible.lsp.server import CrucibleLanguageServer

logger = logging.getLogger(__name__)

INITIALIZE = "initialize"
EXIT = "exit"
# How long the frames behind the queued ``initialize`` wait for it to be handled (the
# configuration loaded, the backend started) before they are served anyway.
INITIALIZE_HANDLED_S = 30.0
# How long a queued ``exit`` waits for the requests queued before it to be answered.
REQUESTS_ANSWERED_S = 5.0
# Collector thresholds while the server loads: young objects are still collected (the import's
# short-lived cycles, ~10 MB of them, must not outlive it), but gen0 passes are rarer and no
# full collection rescans the growing heap (docs/startup.md).
LOADING_THRESHOLDS = (20_000, 20, 1_000)

Item = Frame | FrameError | None
ServerFactory = Callable[[Path | None], "CrucibleLanguageServer"]


def serve_stdio(config_path: Path | None) -> int:
    """Serve on stdin/stdout until ``exit``, EOF or the parent's end; returns the exit code."""
    try:
        return asyncio.run(_serve_stdio(config_path))
    except KeyboardInterrupt:
        return 130


async def _serve_stdio(config_path: Path | None) -> int:
    loop = asyncio.get_running_loop()
    loaded: asyncio.Future[ServerFactory] = loop.create_future()
    threading.Thread(target=_load, args=(loop, loaded), name="crucible-load", daemon=True).start()
    frames = EarlyFrames(FrameReader(await stdin_stream(), MAX_MESSAGE_BYTES), _write_stdout)
    await frames.read_until(loaded)
    try:
        factory = await loaded
    except Exception:
        logger.exception("the server could not be loaded")
        return 1
    server = factory(config_path)
    frames.hand_over(server.protocol)
    return await server.serve_stdio_frames(frames)


def _load(loop: asyncio.AbstractEventLoop, loaded: asyncio.Future[ServerFactory]) -> None:
    """In a thread: import the server; the result (or the failure) goes to ``loaded``."""
    try:
        factory = load_server()
    except BaseException as exc:  # reported on the loop, which decides what to do
        loop.call_soon_threadsafe(_settle, loaded, None, exc)
        return
    loop.call_soon_threadsafe(_settle, loaded, factory, None)


def _settle(
    loaded: asyncio.Future[ServerFactory],
    factory: ServerFactory | None,
    error: BaseException | None,
) -> None:
    if loaded.done():
        return
    if factory is not None:
        loaded.set_result(factory)
    else:
        loaded.set_exception(error or RuntimeError("the server did not load"))


def load_server() -> ServerFactory:
    """Import the server with a lighter collector, then freeze what the import built.

    attrs' generated methods come from the bytecode cache (``runtime/bytecode_cache.py``),
    installed before lsprotocol is first imported; every start path that loads the server
    (stdio, ``--tcp``, ``CRUCIBLE_EARLY_START=0``, the shared daemon) comes through here. The
    factory saves the cache, when something missed, once it has built the server.
    """
    # Imported here, not at the top: this module answers initialize before Crucible's
    # config package (which the cache's directory comes from) is imported.
    from crucible.runtime import bytecode_cache

    thresholds = gc.get_threshold()
    gc.set_threshold(*LOADING_THRESHOLDS)
    try:
        bytecode_cache.install()  # its file's code objects are start-up's, frozen with them
        # Imported here, not at the top: this import is the half second this module hides.
        from crucible.app import App, build_server
    finally:
        settle_startup_objects(thresholds)

    def factory(config_path: Path | None) -> CrucibleLanguageServer:
        server = build_server(App(config_path=config_path))
        bytecode_cache.save_in_background()  # after the load, in a thread of its own
        return server

    return factory


def settle_startup_objects(thresholds: tuple[int, int, int]) -> None:
    """Freeze what start-up built, and give the collector its ``thresholds`` back.

    Importing builds ~7 x 10^4 long-lived objects (lsprotocol's classes, cattrs' hooks). With
    the default thresholds the import runs full collections over them that find almost nothing,
    and the first full collection after it scans them all again (~40 ms, a stall on whatever
    request it lands on; it used to run in the ``initialized`` handler, in front of the first
    request). Frozen, they are never scanned again; the ~100 objects of garbage a full
    collection would find among them stay (a few KB). Measured: docs/startup.md.
    """
    gc.freeze()
    gc.set_threshold(*thresholds)


def _write_stdout(data: bytes) -> None:
    sys.stdout.buffer.write(data)
    sys.stdout.buffer.flush()


def encode_frame(message: dict[str, Any]) -> bytes:
    body = json.dumps(message).encode("utf-8")
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class EarlyFrames:
    """The frames read before the server exists, queued in order, then the reader's: the
    server reads through this object (``CrucibleLanguageServer.serve_stdio_frames``)."""

    def __init__(self, reader: FrameReader, write: Callable[[bytes], None]) -> None:
        self._reader = reader
        self._write = write
        self._queued: deque[Item] = deque()
        self._arrived: deque[float] = deque()  # when each queued item was read (monotonic)
        # A read started while waiting for the server; never cancelled (the reader's state
        # lives in it), so the server gets its frame.
        self._pending: asyncio.Future[Item] | None = None
        self._looking = True  # for the first initialize; off once seen, or after exit
        # Every frame read here is parsed once more (the server parses it again): a few
        # frames, read while the server loads, when the process has nothing else to do.
        self._ended = False  # end of input or exit: nothing more is read before the handover
        self._answered: tuple[jsonrpc.MsgId, Frame, dict[str, Any]] | None = None
        self._handled: asyncio.Future[None] | None = None  # the queued initialize, handled
        self._awaiting: asyncio.Future[None] | None = None
        self._exit: Frame | None = None  # the exit read here, if one was
        self._request_ids: list[jsonrpc.MsgId] = []  # of the requests read here
        self._replaying = False  # the server has taken a queued frame
        self._protocol: CrucibleProtocol | None = None

    @property
    def junk_bytes(self) -> int:
        return self._reader.junk_bytes

    @property
    def answered_id(self) -> jsonrpc.MsgId | None:
        """The id of the ``initialize`` answered here, if one was."""
        return None if self._answered is None else self._answered[0]

    async def read_until(self, ready: asyncio.Future[Any]) -> None:
        """Read, queue and answer ``initialize`` until ``ready`` is done."""
        while not ready.done() and not self._ended:
            if self._pending is None:
                self._pending = asyncio.ensure_future(self._reader.next())
            await asyncio.wait({self._pending, ready}, return_when=asyncio.FIRST_COMPLETED)
            if not self._pending.done():
                break
            if self._pending.exception() is not None:
                self._ended = True  # the server's read gets the exception, as it would have
                break
            item = self._pending.result()
            self._pending = None
            self._take(item)
        if not ready.done():
            await asyncio.wait({ready})

    def _take(self, item: Item) -> None:
        self._queued.append(item)
        self._arrived.append(time.monotonic())
        if item is None:
            self._ended = True
            return
        if not isinstance(item, Frame):
            return
        parsed = jsonrpc.parse_body(item.body)
        if isinstance(parsed, jsonrpc.Request):
            self._request_ids.append(parsed.id)
        if isinstance(parsed, jsonrpc.Notification) and parsed.method == EXIT:
            self._looking, self._ended, self._exit = False, True, item
        elif self._looking and isinstance(parsed, jsonrpc.Request) and parsed.method == INITIALIZE:
            self._looking = False  # a second initialize is the server's to refuse
            capabilities = early_capabilities(parsed.params)
            if capabilities is not None:
                result = initialize_result(capabilities)
                self._write(encode_frame({"jsonrpc": "2.0", "id": parsed.id, "result": result}))
                self._answered = (parsed.id, item, result)

    def hand_over(self, protocol: CrucibleProtocol) -> None:
        """The server's protocol takes over: the early answer's duplicate goes nowhere."""
        self._protocol = protocol
        if self._answered is None:
            return
        msg_id, _, sent = self._answered
        handled: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._handled = handled

        def compare(result: Any, error: Any) -> None:
            if error is not None:
                logger.error("initialize (answered at start-up) failed in the server: %s", error)
            else:
                answer = protocol._converter.unstructure(result)
                if answer != sent:
                    logger.error(
                        "initialize was answered at start-up with %s; the server answers %s",
                        json.dumps(sent),
                        json.dumps(answer),
                    )
            if not handled.done():
                handled.set_result(None)

        protocol.answered_elsewhere[msg_id] = compare

    async def next(self) -> Item:
        if self._awaiting is not None:
            awaiting, self._awaiting = self._awaiting, None
            try:
                await asyncio.wait_for(asyncio.shield(awaiting), INITIALIZE_HANDLED_S)
            except TimeoutError:
                logger.warning(
                    "initialize not handled in %g s: serving what followed it", INITIALIZE_HANDLED_S
                )
        if self._queued:
            if self._replaying:
                # One loop turn between queued frames, as between frames that arrive: the
                # handler of the last one starts (``initialized`` connects the editor, a
                # request enters its debounce) before the next one is dispatched.
                await asyncio.sleep(0)
            self._replaying = True
            item = self._queued.popleft()
            arrived = self._arrived.popleft()
            if self._answered is not None and item is self._answered[1]:
                self._awaiting = self._handled
            elif item is not None and item is self._exit:
                await self._requests_answered()
            elif isinstance(item, Frame) and not self._queued:
                # The last frame held behind the load: a request there has waited that long
                # already (the client's first completion, asked at once, goes upstream now
                # instead of waiting a whole debounce more). Frames with more held behind them
                # keep 0: what follows them (the next keys) supersedes their requests.
                return replace(item, waited_s=time.monotonic() - arrived)
            return item
        if self._pending is not None:
            pending, self._pending = self._pending, None
            return await pending
        return await self._reader.next()

    async def _requests_answered(self) -> None:
        """Wait (a while) for the queued requests to be answered before a queued ``exit``
        ends the server: a client that sent ``shutdown`` and ``exit`` together, before the
        server was loaded, still gets its ``shutdown`` answered."""
        protocol = self._protocol
        if protocol is None:
            return
        futures = protocol._request_futures
        waiting = [asyncio.wrap_future(futures[i]) for i in self._request_ids if i in futures]
        if waiting:
            await asyncio.wait(waiting, timeout=REQUESTS_ANSWERED_S)
