"""The managed llama.cpp server's process: ``python -m crucible.local.child MODEL ...``.

Started by ``process.py`` (never imported by Crucible itself: xllamacpp is the ``local``
extra, and a wheel built for instructions this CPU lacks dies here with SIGILL, not inside the
language server). It runs llama.cpp's own HTTP server in this process, on 127.0.0.1 and a port
the kernel picks, with the API key from ``CRUCIBLE_LOCAL_API_KEY`` (an environment variable,
not an argument: other users can read a process's arguments). Once the model is loaded and the
server listens, it writes the server's root URL as one line on stdout; llama.cpp logs to
stderr, which Crucible reads into its own log.

It leaves on SIGTERM or SIGINT, and on its own when Crucible is gone: the parent sets
PR_SET_PDEATHSIG before exec (SIGKILL when Crucible dies, even of SIGKILL), and this process
also watches its parent pid (``CRUCIBLE_LOCAL_PARENT``) twice a second, for the platforms
without that signal and for the instant between fork and exec.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Callable

_WATCH_INTERVAL_S = 0.5


def main() -> None:
    parser = argparse.ArgumentParser(prog="crucible.local.child")
    parser.add_argument("model")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=4096, help="total; split between the slots")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    parent = int(os.environ.get("CRUCIBLE_LOCAL_PARENT", "0")) or os.getppid()
    if os.getppid() != parent:
        os._exit(3)  # Crucible died before this process could watch it

    wait_for_stop = _stop_signals()

    import xllamacpp  # type: ignore[import-untyped,unused-ignore]

    params = xllamacpp.CommonParams()
    params.model.path = args.model
    params.n_parallel = args.parallel
    params.n_ctx = args.ctx
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.endpoint_slots = True
    params.endpoint_metrics = True
    params.hostnames = ["127.0.0.1"]
    params.port = 0
    key = os.environ.get("CRUCIBLE_LOCAL_API_KEY", "")
    if key:
        params.api_keys = [key]
    server = xllamacpp.Server(params)  # loads the model, then serves from its own threads

    sys.stdout.write(server.listening_address + "\n")
    sys.stdout.flush()

    while not wait_for_stop(_WATCH_INTERVAL_S) and os.getppid() == parent:
        pass
    sys.stderr.flush()
    # Skip the C++ teardown of a server still holding sockets and threads: nothing to save.
    os._exit(0)


def _stop_signals() -> Callable[[float], bool]:
    """A wait for SIGTERM or SIGINT: ``wait(seconds)`` is True once one came."""
    signals = {signal.SIGTERM, signal.SIGINT}
    if hasattr(signal, "sigtimedwait"):  # Linux
        # Blocked before the server's threads exist, so they inherit the mask and the signal
        # reaches sigtimedwait instead of killing the process in some server thread.
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        return lambda seconds: signal.sigtimedwait(signals, seconds) is not None
    stop = threading.Event()  # macOS, Windows: Python's handlers run in this (main) thread
    for number in signals:
        signal.signal(number, lambda *_: stop.set())
    return stop.wait


if __name__ == "__main__":
    main()
