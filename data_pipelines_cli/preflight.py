"""Up-front checks of the CLI: bad input refused before any Prefect server, pipeline or file.

Each check is one line, exit 2 (a `ConfigurationError` or another permanent error), except a
Prefect API that does not answer (exit 1, transient: a rerun may pass); the cheap ones import
no dlt. Docs: docs/operations.md, "Command-line errors".
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from environments import environment_name, load_environment
from environments.run_guard import RunGuardUnavailable, prefect_api_url, unreachable_message
from sources import exchange_rate_dates
from sources.errors import ConfigurationError


def _check_oxr_key() -> None:
    """Set, shaped like an app id, and accepted by OXR: one `usage.json` request, no retries."""
    from sources.exchange_rates import check_configured_key

    check_configured_key()


def _check_pipeline(command_name: str) -> None:
    """What the pipeline's own up-front check refuses (`PipelineSpec.check`): the OXR key; an
    application table's lookback, DSN, credentials, table and column types."""
    from pipelines.registry import by_command_name
    from sources.postgres_table import PostgresUnavailableError

    spec = by_command_name(command_name)
    if spec.check is None:
        return
    try:
        spec.check(load_environment())
    except PostgresUnavailableError as error:
        # Nothing has started, so nothing retries it here: say what to check.
        section = spec.table.credentials_section if spec.table else spec.name
        raise ConfigurationError(
            f"{error}. Check host and port in [sources.{section}] credentials "
            f"(SOURCES__{section.upper()}__CREDENTIALS) or start the database, then rerun."
        ) from None


def _check_environment_name() -> None:
    """`DATA_PIPELINES_ENV` names a known environment (no dlt import, no file)."""
    environment_name()


def _check_one_data_folder() -> None:
    """An explicit data folder holds everything: no dlt folder exported elsewhere splits it.

    `DATA_PIPELINES_DATA_DIR` moves the bucket, dlt's state and the warehouse together (dlt's
    folders follow it). A `DLT_DATA_DIR` or `DLT_LOCAL_DIR` exported outside it (e.g. by a
    stack.env written before they stopped being exported) would send part of a run elsewhere.
    """
    chosen = os.environ.get("DATA_PIPELINES_DATA_DIR")
    if not chosen:
        return
    folder = Path(chosen).resolve()
    for variable in ("DLT_DATA_DIR", "DLT_LOCAL_DIR"):
        value = os.environ.get(variable)
        if value and not Path(value).resolve().is_relative_to(folder):
            raise ConfigurationError(
                f"{variable}={value} is outside DATA_PIPELINES_DATA_DIR={chosen}, which would "
                f"split this run's data between two folders: unset {variable} (the data "
                "folder sets dlt's folders itself; `data-pipelines up` rewrites stack.env "
                "without it), then rerun."
            )


# A Prefect API that has not answered its health check within this many seconds is down.
API_CHECK_TIMEOUT_SECONDS = 5.0


def _check_run_guard_api() -> None:
    """The run's Prefect API answers; production never runs on a temporary one.

    A run (in this process, as a Prefect flow run) needs its API before anything starts: the
    flow run is created there and the pipeline's one-run limit is held there. One health
    request with a short timeout; an answer of any kind (even 401 or 404, e.g. Prefect
    Cloud's) means the API is reachable and Prefect will say the rest.
    """
    api_url = prefect_api_url()
    if api_url is None:
        if environment_name() == "production":
            raise ConfigurationError(
                "No Prefect API for a production run: it holds its pipeline's one-run limit on "
                "the Prefect server the workers use. Export PREFECT_API_URL (and "
                "PREFECT_API_KEY on Prefect Cloud) as for `prefect deployment run`, or "
                "`prefect profile use` that server's profile, then rerun."
            )
        return
    import httpx

    try:
        httpx.get(f"{api_url.rstrip('/')}/health", timeout=API_CHECK_TIMEOUT_SECONDS)
    except httpx.TimeoutException:
        cause = f"no answer within {API_CHECK_TIMEOUT_SECONDS:g} s"
    except httpx.TransportError as error:
        cause = _transport_cause(error)
    else:
        return
    raise RunGuardUnavailable(
        unreachable_message(api_url, "the run did not start and loaded nothing", cause)
    )


def _transport_cause(error: BaseException) -> str:
    """`connection refused`, `name not resolved`, ...: the innermost cause, short."""
    inner: BaseException = error
    while inner.__cause__ is not None or inner.__context__ is not None:
        inner = inner.__cause__ or inner.__context__  # type: ignore[assignment]
    if isinstance(inner, ConnectionRefusedError):
        return "connection refused"
    text = str(inner) or type(inner).__name__
    return text.splitlines()[0][:120]


# Commands that build the environment (DATA_PIPELINES_ENV) or touch the data folder.
_USES_ENVIRONMENT = ("run", "backfill", "verify", "query", "simulate-day", "apply")
_USES_DATA_FOLDER = ("run", "backfill", "verify", "query", "simulate-day", "up", "demo")


def preflight(args: argparse.Namespace) -> None:
    """Refuse bad input before anything starts: no Prefect server, no pipeline, nothing written.

    Cheapest first, each a one-line permanent error: dates (no dlt import), the environment's
    name, the data folder, then what needs dlt's configuration (the products lookback, the OXR
    key's shape), then one request or connection each (the key at OXR's free `usage.json`, the
    products database, its table and column types). Docs: docs/operations.md, "Command-line
    errors".
    """
    if args.command == "backfill":
        # the range the flow runs: parsed here once, refused before anything starts
        args.days = exchange_rate_dates.DateRange.parse(args.start_date, args.end_date)
    if args.command in _USES_ENVIRONMENT:
        _check_environment_name()
    if args.command in _USES_DATA_FOLDER:
        _check_one_data_folder()
    if args.command in ("run", "backfill"):
        _check_run_guard_api()
    if args.command == "backfill":
        _check_oxr_key()
    if args.command == "run":
        _check_pipeline(args.pipeline)
