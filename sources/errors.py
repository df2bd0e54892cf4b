"""Failure classes shared by every source.

A permanent error (bad credentials, a plan that lacks the endpoint, a missing table) cannot be
fixed by trying again, so neither dlt's HTTP retries nor Prefect's task retries repeat it; its
message says what to fix. Everything else is treated as transient and retried.
"""

from __future__ import annotations


class SourceError(RuntimeError):
    """Base for the errors our sources raise on purpose."""


class PermanentSourceError(SourceError):
    """Retrying cannot help: a human has to change configuration, credentials or the plan."""


class TransientSourceError(SourceError):
    """The remote side failed in a way that may pass (timeouts, 5xx, rate limits)."""


class ConfigurationError(PermanentSourceError):
    """A setting is missing or wrong; the message says which and how to set it."""
