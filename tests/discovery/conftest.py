"""Shared fixtures for the self-discovery tests (the session's ``ray_local`` is in tests/conftest.py)."""
