"""Which failures are worth retrying, decided once for every flow.

Flows import this, not the sources: dlt wraps source exceptions in its own step errors, so the
decision walks the exception chain.
"""

from __future__ import annotations

from dlt.common.configuration.exceptions import ConfigFieldMissingException

from sources.errors import (
    ConfigurationError,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PermanentSourceError,
    ConfigurationError,
    ConfigFieldMissingException,
)

__all__ = [
    "PERMANENT_ERRORS",
    "ConfigurationError",
    "PermanentSourceError",
    "SourceError",
    "TransientSourceError",
    "exception_chain",
    "is_permanent",
    "root_cause_message",
]


def exception_chain(exc: BaseException) -> list[BaseException]:
    """The exception, its causes and contexts, outermost first (cycles cut)."""
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and all(current is not s for s in seen):
        seen.append(current)
        current = current.__cause__ or current.__context__
    return seen


def is_permanent(exc: BaseException) -> bool:
    """True when any exception in the chain is one that retrying cannot fix."""
    return any(isinstance(e, PERMANENT_ERRORS) for e in exception_chain(exc))


def root_cause_message(exc: BaseException) -> str:
    """The most specific message in the chain: ours if we raised one, else the innermost."""
    chain = exception_chain(exc)
    for e in chain:
        if isinstance(e, (SourceError, ConfigurationError)):
            return str(e)
    return str(chain[-1])
