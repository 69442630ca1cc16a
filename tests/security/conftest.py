"""The security suite shares the end-to-end harness (``tests/e2e/conftest.py``): the real
server process over stdio and the loopback fake provider."""

from tests.e2e.conftest import *  # noqa: F403
from tests.e2e.conftest import fake, lsp_session  # noqa: F401
