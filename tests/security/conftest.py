"""The security suite reuses the end-to-end harness: the real server process, the loopback
provider (``fake``) and the pytest-lsp session (``lsp_session``)."""

from __future__ import annotations

from tests.e2e.conftest import *  # noqa: F403
from tests.e2e.conftest import fake, lsp_session

__all__ = ["fake", "lsp_session"]
