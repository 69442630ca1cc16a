"""The ``crucible-lsp`` command line.

``--version`` and ``--help`` import nothing but argparse: editors and scripts call them to
check the installation, and the pygls/lsprotocol import alone costs ~200 ms. ``--shared``
(or ``CRUCIBLE_SHARED=1``) with stdio runs only the thin client of ``shared/client.py``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from crucible import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crucible-lsp",
        description="Crucible: an AI language server (inline completions from LLM providers).",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve", "doctor"],
        default="serve",
        help="serve (default): run the language server; doctor: check configuration and"
        " providers. Also: models list|pull NAME|rm NAME, the local kind's models",
    )
    parser.add_argument("--version", action="version", version=f"crucible-lsp {__version__}")
    transport = parser.add_mutually_exclusive_group()
    transport.add_argument("--stdio", action="store_true", help="serve on stdin/stdout (default)")
    transport.add_argument("--tcp", action="store_true", help="serve on TCP")
    parser.add_argument("--host", default="127.0.0.1", help="TCP host (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=2087, help="TCP port (default 2087)")
    parser.add_argument(
        "--shared",
        action="store_true",
        help="stdio: relay to the per-user shared server, started when absent (also"
        " CRUCIBLE_SHARED=1); windows share one cache, provider pool and memory budget",
    )
    parser.add_argument(
        "--config", type=Path, help="a crucible TOML file, over user/workspace ones"
    )
    parser.add_argument(
        "--workspace",
        type=Path,
        metavar="DIR",
        help="doctor: the workspace whose crucible.toml applies (default: found by walking up"
        " from the current directory to crucible.toml, else a .git/.hg/.jj/.svn directory)",
    )
    parser.add_argument(
        "--json", action="store_true", help="doctor: print one JSON object for scripts"
    )
    parser.add_argument(
        "--log-file",
        type=Path,
        help="also write the log here, at --log-level, tracebacks included",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        type=str.upper,
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level (default INFO) of the editor's log (window/logMessage) and --log-file;"
        " stderr gets only warnings and errors",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["models"]:  # its own verbs and options (local/commands.py)
        from crucible.local.commands import run_models

        return run_models(argv[1:])
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command != "doctor" and (args.json or args.workspace is not None):
        parser.error("--json and --workspace belong to doctor")  # exits 2
    if args.workspace is not None and not args.workspace.is_dir():
        parser.error(f"--workspace {args.workspace}: not a directory")

    shared = args.shared or os.environ.get("CRUCIBLE_SHARED", "") == "1"
    if args.command == "serve" and shared and not args.tcp:
        # Standard library only: the thin client (shared/client.py) is all this window runs.
        try:
            from crucible.shared.client import run_client
        except ImportError:  # no fcntl / Unix sockets (Windows): this window serves alone
            code = None
        else:
            code = run_client(args.config, args.log_level, args.log_file)
        if code is not None:
            return code  # else: the daemon's directory is unusable; this window serves alone

    from crucible.runtime.log import ClientLogHandler, configure_logging

    if args.command == "doctor":
        configure_logging(args.log_level, args.log_file)
        from crucible.doctor import run_doctor

        return run_doctor(
            config_path=args.config, cwd=Path.cwd(), workspace=args.workspace, as_json=args.json
        )

    # Records are buffered until the server connects this handler at `initialize`.
    configure_logging(args.log_level, args.log_file, client=ClientLogHandler())

    if not args.tcp and os.environ.get("CRUCIBLE_EARLY_START", "1") != "0":
        # stdio: `initialize` is answered while the server loads (lsp/early_start.py).
        from crucible.lsp.early_start import serve_stdio

        return serve_stdio(args.config)

    from crucible.lsp.early_start import load_server

    server = load_server()(args.config)
    if args.tcp:
        return server.serve_tcp(args.host, args.port)
    return server.serve_stdio()


if __name__ == "__main__":
    sys.exit(main())
