"""Run llama.cpp's HTTP server (from the ``xllamacpp`` wheel) until SIGTERM or SIGINT.

usage: python serve.py MODEL ADDRESS_FILE [--parallel N] [--ctx N] [--threads N]

Started as a child process by ``server.py``, never imported by the test process: a server built
for instructions this CPU lacks dies here with SIGILL, not inside pytest. It binds an ephemeral
port on 127.0.0.1 and, once the model is loaded and the server listens, writes the server's
root URL to ADDRESS_FILE (atomically, via a rename). llama.cpp logs to stderr.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("address_file")
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--ctx", type=int, default=8192, help="total; split between the slots")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()

    # Blocked before the server's threads exist, so they inherit the mask and the signal
    # reaches sigwait below instead of killing the process in some server thread.
    signals = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, signals)

    import xllamacpp

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
    server = xllamacpp.Server(params)  # loads the model, then serves from its own threads

    temporary = args.address_file + ".tmp"
    with open(temporary, "w") as out:
        out.write(server.listening_address)
    os.replace(temporary, args.address_file)

    # Wait for SIGTERM/SIGINT; also leave when the parent (pytest) is gone, so that a killed
    # test run leaves no server behind.
    parent = os.getppid()
    while signal.sigtimedwait(signals, 0.5) is None and os.getppid() == parent:
        pass
    sys.stderr.flush()
    # Skip the C++ teardown of a server still holding sockets and threads: nothing to save.
    os._exit(0)


if __name__ == "__main__":
    main()
