"""Shared pytest configuration.

Its presence matters: ``tests/`` is a package, so pytest imports this file as ``tests.conftest``
and puts the repository root on ``sys.path`` first, which lets every test (in any folder, with or
without ``__init__.py``) import ``tests.fakes``.
"""
