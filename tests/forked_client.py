"""The stand-in a test starts for a forked server (``tests/forked_servers.py``): standard
library only, run with ``python -S``, so it costs ~15 ms.

``forked_client.py SOCKET ARGS…`` hands its stdin, stdout and stderr, its environment and
working directory to the fork server, which forks a server process running
``crucible.cli.main(ARGS)`` on them; it then waits for that process's exit status and exits
with it. SIGTERM and SIGINT are passed on to the server process.
"""

from __future__ import annotations

import array
import json
import os
import signal
import socket
import sys


def main() -> int:
    socket_path, args = sys.argv[1], sys.argv[2:]
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.connect(socket_path)
    request = json.dumps({"args": args, "env": dict(os.environ), "cwd": os.getcwd()})
    fds = array.array("i", [0, 1, 2])
    connection.sendmsg([request.encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())])
    reader = connection.makefile("rb")
    child = 0

    def forward(number: int, _frame: object) -> None:
        if child:
            os.kill(child, number)

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, forward)
    for line in reader:
        word, _, value = line.decode().partition(" ")
        if word == "pid":
            child = int(value)
        elif word == "exit":
            return int(value)
    return 1  # the fork server went away before the server ended


if __name__ == "__main__":
    sys.exit(main())
