"""Fixtures of the security suite: the e2e harness (the real server process, the loopback
fake provider) and, for the tests one level down, providers built on that fake."""

from __future__ import annotations

from tests.e2e.conftest import fake, lsp_session
from tests.providers.conftest import make, with_key

__all__ = ["fake", "lsp_session", "make", "with_key"]
