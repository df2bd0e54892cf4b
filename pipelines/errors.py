"""Which failures are worth retrying, decided once for every flow.

Flows import this, not the sources: dlt wraps source exceptions in its own step errors, so the
decision walks the exception chain.
"""

from __future__ import annotations

import os
import sys
import traceback
from typing import Any

from dlt.common.configuration.exceptions import (
    ConfigFieldMissingException,
    LookupTrace,
    LookupTraces,
)
from dlt.common.schema.exceptions import DataValidationError

from sources.errors import (
    ConfigurationError,
    PermanentSourceError,
    SourceError,
    TransientSourceError,
)
from sources.exchange_rate_dates import InvalidDateError

PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    PermanentSourceError,
    ConfigurationError,
    ConfigFieldMissingException,
    # a row that breaks a table's dlt schema contract: the same rows would break it again
    DataValidationError,
)
# An operator's typo (a bad date, a range that runs backwards): the run is refused before any
# work, fails and reaches Slack, but is not an outage and never counts toward a page.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (InvalidDateError,)
# Whose exception messages are written for operators (no type name needed in front).
OUR_PACKAGES = frozenset(
    {"sources", "pipelines", "verify", "flows", "environments", "local_runtime"}
)
# Exit codes of our command-line entry points.
EXIT_TRANSIENT = 1
EXIT_PERMANENT = 2
# Set to 1 for the traceback as well as the one line (the CLI also has --debug).
DEBUG_ENV = "DATA_PIPELINES_DEBUG"

__all__ = [
    "PERMANENT_ERRORS",
    "ConfigurationError",
    "PermanentSourceError",
    "SchemaContractViolation",
    "SourceError",
    "TransientSourceError",
    "debug_requested",
    "exception_chain",
    "exit_code",
    "is_bad_input",
    "is_permanent",
    "missing_setting_line",
    "one_line_cause",
    "report_failure",
    "root_cause_message",
]


class SchemaContractViolation(PermanentSourceError):
    """A source column no longer fits the warehouse's under the pipeline's schema contract.

    Carries what a schema-change alert names: the table, the column and the fix (the message
    is the whole one-line cause). Retrying cannot help, so it is permanent.
    """

    def __init__(
        self, message: str, *, pipeline: str, dataset: str, table: str, column: str, fix: str
    ) -> None:
        super().__init__(message)
        self.pipeline, self.dataset, self.table = pipeline, dataset, table
        self.column, self.fix = column, fix


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


def is_bad_input(exc: BaseException) -> bool:
    """True when the run was refused for its input (an operator's typo), not for an outage."""
    return any(isinstance(e, BAD_INPUT_ERRORS) for e in exception_chain(exc))


# Lookups dlt makes for values our code passes itself (e.g. a pipeline's dataset name): not
# something an operator sets, so never "the missing setting" when a real one is missing too.
_INTERNAL_PROVIDERS = frozenset({"ExplicitValues", "Explicit Values"})


def _missing_leaves(
    traces: dict[str, Any], spec_name: str
) -> list[tuple[str, str, list[LookupTrace]]]:
    """(field, spec, traces) of every missing value, embedded configurations walked into."""
    leaves: list[tuple[str, str, list[LookupTrace]]] = []
    for name, field_traces in traces.items():
        embedded = [t for t in field_traces if isinstance(t, LookupTraces)]
        if embedded:  # a union: its first alternative says enough
            leaves.extend(_missing_leaves(embedded[0].traces, embedded[0].spec_name))
        else:
            looked = [t for t in field_traces if isinstance(t, LookupTrace)]
            leaves.append((name, spec_name, looked))
    return leaves


def _canonical(keys: list[str]) -> str:
    """The key an operator would set: the one dlt also tried under a prefix (a pipeline name).

    dlt tries `<pipeline>.destination.x.credentials.host` before `destination.x.credentials.host`
    (and `<PIPELINE>__DESTINATION__...` before `DESTINATION__...`); the unprefixed one is what
    the docs and secrets.toml.example use. Without prefixes, the most specific (first) key.
    """
    for key in keys:
        if any(other != key and other.endswith(("." + key, "__" + key)) for other in keys):
            return key
    return keys[0]


def missing_setting_line(exc: ConfigFieldMissingException) -> str:
    """dlt's missing-configuration error on one line: the setting, where dlt looked, the fix.

    dlt's own text is a dozen lines (every key tried in every provider, then every file
    location); this keeps the setting's name and the most specific key per provider, and says
    how many less specific ones were tried too (`--debug` prints dlt's whole list).
    """
    leaves = _missing_leaves(exc.traces, exc.spec_name)
    real = [leaf for leaf in leaves if any(t.provider not in _INTERNAL_PROVIDERS for t in leaf[2])]
    leaves = real or leaves
    if not leaves:
        return f"Missing configuration in {exc.spec_name}; rerun with --debug for dlt's details."
    name, spec, looked = leaves[0]
    by_provider: dict[str, list[str]] = {}
    for trace in looked:
        by_provider.setdefault(trace.provider, []).append(trace.key)
    shown = {provider: _canonical(keys) for provider, keys in by_provider.items()}
    dotted = next((key for key in shown.values() if "." in key), name)
    env_key = next(
        (key for key in shown.values() if "__" in key or key.isupper()),
        dotted.replace(".", "__").upper(),
    )
    where = "; ".join(
        f"{provider} {shown[provider]}"
        + (f" (+{len(keys) - 1} other keys)" if len(keys) > 1 else "")
        for provider, keys in by_provider.items()
    )
    others = [leaf[0] for leaf in leaves[1:]]
    also = f" (also missing: {', '.join(others[:3])})" if others else ""
    return (
        f"Missing setting `{dotted}` ({spec}){also}; dlt looked in: {where or 'nowhere'}. "
        f"Fix: set it in .dlt/secrets.toml (secrets) or .dlt/config.toml, or export {env_key}, "
        "then rerun (--debug shows dlt's full list)."
    )


def one_line_cause(exc: BaseException) -> str:
    """The root cause and its fix on one line: what state messages, alerts and the CLI show.

    Our own errors already read "what failed: what to do"; anything else (a driver's or dlt's
    error deep in the chain) is named by its type so the line still says what happened.
    """
    chain = exception_chain(exc)
    ours = next((e for e in chain if isinstance(e, (SourceError, ConfigurationError))), None)
    # else any error our own code raised on purpose (e.g. data-freshness's failed checks)
    ours = ours or next(
        (e for e in chain if type(e).__module__.split(".")[0] in OUR_PACKAGES), None
    )
    if ours is not None:
        # ours may wrap a long tail (dlt's own text): keep all of it, on one line
        return " ".join(str(ours).split()) or type(ours).__name__
    missing = next((e for e in chain if isinstance(e, ConfigFieldMissingException)), None)
    if missing is not None:
        return missing_setting_line(missing)
    cause = chain[-1]
    first_line = next((line.strip() for line in str(cause).splitlines() if line.strip()), "")
    return f"{type(cause).__name__}: {first_line}" if first_line else type(cause).__name__


def exit_code(exc: BaseException) -> int:
    """2 when a human must change something (input, configuration, credentials), else 1."""
    return EXIT_PERMANENT if is_permanent(exc) else EXIT_TRANSIENT


def debug_requested() -> bool:
    """True when `DATA_PIPELINES_DEBUG` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")


def report_failure(error: BaseException, debug: bool = False) -> int:
    """Print the one-line cause to stderr (and the traceback when debugging); the exit code."""
    if debug or debug_requested():
        traceback.print_exception(error)
    print(one_line_cause(error), file=sys.stderr)
    return exit_code(error)
