"""``python -m crucible``: the same entry point as the ``crucible-lsp`` script."""

from crucible.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
