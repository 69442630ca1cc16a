"""Test doubles shared by unit, provider, end-to-end tests and benchmarks.

``tests.fakes.provider.FakeProvider`` is a loopback LLM provider (a real HTTP server).
"""
