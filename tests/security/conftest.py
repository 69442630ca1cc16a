"""The security suite runs against the same harness as the end-to-end tests: the real server
process (pytest-lsp) and loopback fake providers; and, for the tests one level down, providers
built on that fake."""

from tests.e2e.conftest import *  # noqa: F403
from tests.e2e.conftest import fake, lsp_session  # noqa: F401 (fixtures, by name)
from tests.providers.conftest import make, with_key  # noqa: F401 (fixtures, by name)
