"""`data-pipelines`: the operator's own verbs. Prefect's and dlt's CLIs stay theirs.

Run `data-pipelines --help` for the manual, `data-pipelines COMMAND --help` for one verb.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version

from data_pipelines_cli.preflight import preflight
from environments import load_environment
from pipelines.environment import quiet_snowflake_logout_notice
from pipelines.text_table import print_table
from sources import exchange_rate_dates
from sources.errors import PermanentSourceError, TransientSourceError

DESCRIPTION = """\
data-pipelines: dlt pipelines (Open Exchange Rates, the PostgreSQL products audit log) into a
warehouse, orchestrated by Prefect.

Environments: DATA_PIPELINES_ENV=local (default: DuckDB files and a bucket folder under
DATA_PIPELINES_DATA_DIR, default ./.data) or production (Snowflake and S3, credentials from
dlt config: .dlt/secrets.toml, environment variables, AWS Secrets Manager).

Typical local session:
  data-pipelines demo            bring the stack up, run every deployment once, summarise
  source .data/stack.env         then use Prefect's own CLI as usual:
  prefect deployment run exchange-rates-daily/production
  prefect flow-run ls --limit 5
  data-pipelines query "select count(*) from DLT.OPEN_EXCHANGE_RATES.CURRENCIES"
  data-pipelines down            stop everything (data stays in .data)

Errors: one line on stderr, the cause and its fix; exit 2 when a human must change something
(input, configuration, credentials, an unreachable database), 1 for a transient failure that a
rerun may fix. --debug (or DATA_PIPELINES_DEBUG=1) adds the traceback. Inputs (dates, the OXR
key, the products database) are checked before anything starts.
"""
DEBUG_ENV = "DATA_PIPELINES_DEBUG"

# Handlers import what they drive (Prefect, dlt, the local stack) inside their body: bad input
# and --help answer in well under a second without importing them (tests/test_cli_errors.py).


# ---- stack -------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from dev_stack import stack

    print("\n".join(stack.up().summary()))
    return 0


def cmd_down(args: argparse.Namespace) -> int:
    from dev_stack import stack

    stopped = stack.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from dev_stack import stack

    print_table(["service", "status"], sorted(stack.status().items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: stack up, each deployment once, wait, one summary table."""
    from dev_stack import demo

    return demo.run(timeout=args.timeout)


def cmd_rehearse(args: argparse.Namespace) -> int:
    """Production, unchanged, on stand-ins: all deployments, data-freshness, one summary."""
    from rehearsal import run as rehearsal_run

    if args.stop:
        return rehearsal_run.stop()
    return rehearsal_run.run(timeout=args.timeout, keep=args.keep)


# ---- pipelines -----------------------------------------------------------------------------


class _NoTraceback(logging.Filter):
    """Console lines of a run without their tracebacks (the run's logs in Prefect keep them)."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.exc_info, record.exc_text, record.stack_info = None, None, None
        return True


def _console_without_tracebacks(args: argparse.Namespace) -> None:
    """Prefect's console handler (set up by now) shows a failing run's lines, not tracebacks.

    The API handler has formatted each record before the console sees it, so the Prefect UI
    still has the whole traceback; `--debug` keeps them on the console too.
    """
    from prefect.logging.handlers import PrefectConsoleHandler

    if args.debug:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, PrefectConsoleHandler) and not any(
            isinstance(f, _NoTraceback) for f in handler.filters
        ):
            handler.addFilter(_NoTraceback())


class _PipelineChoices:
    """`run`'s choices: every pipeline of the registry by its command name, read only when a
    `run` is parsed or its help printed (the registry imports dlt: ~0.8 s no other command
    needs)."""

    def _names(self) -> list[str]:
        from pipelines.registry import PIPELINES

        return [spec.command_name for spec in PIPELINES.values()]

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self) -> Iterator[str]:
        return iter(self._names())


def run_flow_name(pipeline: str, full_refresh: bool) -> str:
    """The flow `run <pipeline> [--full-refresh]` runs (its `run` flow without a full refresh)."""
    from pipelines.registry import by_command_name

    spec = by_command_name(pipeline)
    flow = (spec.flow_for("full-refresh") if full_refresh else None) or spec.flow_for("run")
    assert flow is not None, f"{spec.name} has no flow for `run`"
    return flow.name


def cmd_run(args: argparse.Namespace) -> int:
    from infra.prefect_setup import deployments, load_entrypoint

    flow_name = run_flow_name(args.pipeline, args.full_refresh)
    # the flow prefect.yaml deploys under that name: the CLI runs what the workers run
    entrypoint = next(d.entrypoint for d in deployments() if d.flow_name == flow_name)
    flow = load_entrypoint(entrypoint)
    _console_without_tracebacks(args)
    result = flow()
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from flows.exchange_rates import exchange_rates_backfill_flow

    _console_without_tracebacks(args)
    days = args.days  # resolved and checked by the preflight (end_date defaults to yesterday)
    result = exchange_rates_backfill_flow(
        start_date=days.start.isoformat(), end_date=days.end.isoformat()
    )
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_simulate_day(args: argparse.Namespace) -> int:
    from dev_stack import postgres, products_data

    dsn = args.dsn or postgres.ensure_running().dsn
    counts = products_data.simulate_day(dsn)
    print(json.dumps(counts, indent=2, default=str))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check what users read in the current environment; exit 1 listing what failed."""
    from verify import verify

    report = verify(load_environment())
    if args.json:
        print(json.dumps({"ok": report.ok, "checks": report.as_rows()}, indent=2, default=str))
    else:
        print(report.render())
    return 0 if report.ok else 1


class QueryRefused(PermanentSourceError):
    """The warehouse refused the SQL itself (syntax, unknown table or column): fix the SQL."""


class WarehouseUnreachable(TransientSourceError):
    """The query did not get an answer (connection refused, timeout): may pass on a rerun."""


def cmd_query(args: argparse.Namespace) -> int:
    """SQL against the environment's warehouse: local DuckDB files, or Snowflake in production."""
    environment = load_environment()
    query = environment.warehouse_table_query()  # refuses here when settings are missing
    try:
        columns, rows = query(args.sql)
    except PermanentSourceError:
        raise
    except Exception as error:
        from pipelines.errors import is_permanent, one_line_cause

        if is_permanent(error):
            raise
        if _is_bad_sql(error):
            first = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
            raise QueryRefused(
                f"The {environment.name} warehouse refused the query: {first[:300]}. Fix the "
                "SQL; tables go by DATABASE.SCHEMA.TABLE, e.g. DLT.OPEN_EXCHANGE_RATES.CURRENCIES."
            ) from error
        kind = str(environment.warehouse().destination_type).rsplit(".", 1)[-1]
        raise WarehouseUnreachable(
            f"The {environment.name} warehouse ({kind}) gave no answer: "
            f"{one_line_cause(error)[:300]}. Check its address and credentials in dlt config "
            f"([destination.{kind}.credentials]) and the network, then rerun."
        ) from error
    print_table(columns, rows)
    return 0


def _is_bad_sql(error: BaseException) -> bool:
    """A refusal of the SQL (DuckDB's parser/catalog/binder, dlt's terminal SQL errors)."""
    import duckdb
    from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseUndefinedRelation

    bad = (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException)
    return isinstance(error, (*bad, DatabaseTerminalException, DatabaseUndefinedRelation))


def _apply_prefect(args: argparse.Namespace) -> int:
    from infra import alerting, prefect_setup

    for line in prefect_setup.ensure_work_pools():
        print(line)
    for line in prefect_setup.ensure_pipeline_concurrency_limits():
        print(line)
    # a flow run whose process died ends Crashed (the run guard's waits never name it)
    for line in alerting.ensure_silent_flow_runs_crash():
        print(line)
    if args.git_repository:
        commit = args.git_commit or prefect_setup.current_commit()
        for line in prefect_setup.ensure_git_settings(args.git_repository, commit, args.git_token):
            print(line)
    return 0


def _apply_alerting(args: argparse.Namespace) -> int:
    from infra import alerting

    # Secrets from dlt config ([alerting]: environment, secrets.toml, Secrets Manager).
    for line in alerting.apply():
        print(line)
    return 0


def _apply_snowflake(args: argparse.Namespace) -> int:
    from infra import snowflake

    return snowflake.apply(dry_run=args.dry_run)


APPLY_TARGETS: dict[str, Callable[[argparse.Namespace], int]] = {
    "prefect": _apply_prefect,
    "alerting": _apply_alerting,
    "snowflake": _apply_snowflake,
}


def cmd_apply(args: argparse.Namespace) -> int:
    return APPLY_TARGETS[args.target](args)


# One handler per command: `main` dispatches through this table.
COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "demo": cmd_demo,
    "rehearse": cmd_rehearse,
    "up": cmd_up,
    "down": cmd_down,
    "status": cmd_status,
    "run": cmd_run,
    "backfill": cmd_backfill,
    "simulate-day": cmd_simulate_day,
    "query": cmd_query,
    "verify": cmd_verify,
    "apply": cmd_apply,
}


# ---- parser -------------------------------------------------------------------------------


DEBUG_HELP = f"on failure also print the traceback (or set {DEBUG_ENV}=1)"


def version_text() -> str:
    """`data-pipelines 0.1.0 (dlt 1.31.0, prefect 3.x, Python 3.11.x)`, from installed metadata."""

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    python = ".".join(str(part) for part in sys.version_info[:3])
    return (
        f"data-pipelines {of('data-pipelines')} "
        f"(dlt {of('dlt')}, prefect {of('prefect')}, Python {python})"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="data-pipelines",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help=DEBUG_HELP)
    parser.add_argument(
        "--version",
        action="version",
        version=version_text(),
        help="print the version of data-pipelines, dlt, Prefect and Python, then exit",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser(
        "demo",
        help="the main job: start the local stack, run every deployment once, summarise",
        description="Start the local stack (OXR sandbox, PostgreSQL, Prefect server, work pool, "
        "deployments, worker), trigger each deployment of prefect.yaml once (the backfill over "
        "2026-01-01..2026-01-07), wait, and print one summary. Idempotent.",
    )
    demo.add_argument("--timeout", type=float, default=600, help="seconds to wait for the runs")

    rehearse = sub.add_parser(
        "rehearse",
        help="before your first production deploy: production, unchanged, on local stand-ins",
        description="Run the production path end to end on stand-ins on 127.0.0.1 (fakesnow "
        "for Snowflake, moto for S3 and Secrets Manager, a pipe stand-in running the DDL's "
        "COPY, a fresh Prefect server and a worker whose runs clone this commit and install "
        "production packages): apply the Snowflake DDL, run every deployment and "
        "data-freshness, print states, rows, bucket objects and `verify`. Fresh each time; "
        "stops what it started unless --keep. docs/rehearsal.md says what it proves.",
    )
    rehearse.add_argument("--timeout", type=float, default=600, help="seconds to wait for runs")
    rehearse.add_argument("--keep", action="store_true", help="leave the stand-ins running")
    rehearse.add_argument("--stop", action="store_true", help="stop a kept rehearsal")

    sub.add_parser(
        "up",
        help="start the local stack and deploy (idempotent)",
        description="Start the local stack: the OXR sandbox, PostgreSQL with seeded "
        "application tables (raw_data.products), a Prefect server, the `production` work pool, "
        "every deployment of prefect.yaml and a worker. Prints the addresses and a file to "
        "`source` for Prefect's CLI. Starting it again leaves what runs alone.",
    )
    sub.add_parser(
        "down",
        help="stop the local stack; data stays",
        description="Stop what `up` or `demo` started. The data folder (warehouse files, "
        "bucket, dlt state) stays; `up` resumes with it.",
    )
    sub.add_parser(
        "status",
        help="what of the local stack is running",
        description="One line per local service (Prefect server, worker, OXR sandbox, "
        "PostgreSQL) and whether it runs.",
    )

    run = sub.add_parser(
        "run",
        help="run one pipeline's flow now, in this process",
        description="Run one pipeline's flow in this process, against the environment's "
        "warehouse (DATA_PIPELINES_ENV), and print its summary. Production needs the Prefect "
        "API the workers use (PREFECT_API_URL): the run holds its pipeline's one-run limit there.",
    )
    run.add_argument(
        "pipeline",
        choices=_PipelineChoices(),
        help="a pipeline of pipelines/registry.py: currencies (OXR currencies.json), "
        "exchange-rates (OXR latest.json, the daily run), and each application table "
        "(PostgreSQL, incremental), e.g. products",
    )
    run.add_argument(
        "--full-refresh",
        action="store_true",
        help="application tables: reload everything, reset the cursor",
    )

    backfill = sub.add_parser(
        "backfill",
        help="exchange rates for an inclusive date range",
        description="OXR historical rates for start_date..end_date (inclusive), one file per "
        "day; days already in the bucket are not requested again, days OXR has no rates for "
        "are skipped and listed. Refused before any request when the month's quota cannot "
        "cover the missing days.",
    )
    backfill.add_argument("start_date", help="first day, YYYY-MM-DD (from 1999-01-01)")
    backfill.add_argument(
        "end_date", nargs="?", default=None, help="YYYY-MM-DD (default: yesterday)"
    )

    simulate = sub.add_parser(
        "simulate-day",
        help="write a day of INSERT/UPDATE/DELETE audit rows to raw_data.products",
        description="Write one day of application activity (inserts, updates, deletes) as "
        "audit rows into raw_data.products, so the next products run has something to load.",
    )
    simulate.add_argument("--dsn", help="PostgreSQL DSN (default: the local cluster)")

    query = sub.add_parser(
        "query",
        help="SQL against the environment's warehouse (local DuckDB files, or Snowflake)",
        description="Run one SQL statement against the warehouse of the current environment "
        "(DATA_PIPELINES_ENV): locally the DuckDB files DLT and SNOWPIPE, attached read-only "
        "under their production names; in production Snowflake, with the credentials the loads "
        "use ([destination.snowflake.credentials]). Without them it refuses in one line, exit 2.",
    )
    query.add_argument(
        "sql",
        help='one SQL statement, e.g. "select count(*) from DLT.APPLICATION_DATA.PRODUCTS"',
    )

    verify = sub.add_parser(
        "verify",
        help="check target tables, row counts, freshness and duplicate keys (exit 1 if not ok)",
        description="For the current environment (DATA_PIPELINES_ENV): every target table "
        "exists and has rows; the latest rate date is at most [verify] max_rate_age_days (1) "
        "before today; the latest products valid_ts is at most max_products_lag_hours (26) "
        "behind PostgreSQL; no duplicate keys where users read; in production also the pipe's "
        "SYSTEM$PIPE_STATUS and COPY_HISTORY errors. The data-freshness deployment runs the same.",
    )
    verify.add_argument("--json", action="store_true", help="machine-readable output")

    apply = sub.add_parser(
        "apply",
        help="apply platform as code: Prefect, alerting or Snowflake",
        description="prefect: work pools (one no deployment in prefect.yaml runs in is "
        "paused), one global concurrency limit per dlt pipeline (dlt-pipeline:<name>, limit 1) "
        "and git settings. alerting: the Slack and PagerDuty webhook blocks (from [alerting] "
        "slack_webhook_url, pagerduty_integration_key in dlt config) and the automations of "
        "infra/alerts.yaml; idempotent. snowflake: the versioned DDL.",
    )
    apply.add_argument(
        "target",
        choices=["prefect", "alerting", "snowflake"],
        help="what to apply: prefect (pools, limits, git settings), alerting (blocks, the "
        "automations of infra/alerts.yaml) or snowflake (the DDL in infra/snowflake/)",
    )
    apply.add_argument("--dry-run", action="store_true", help="snowflake: print the SQL only")
    apply.add_argument("--git-repository", help="prefect: repository the workers clone")
    apply.add_argument(
        "--git-commit",
        help="prefect: the exact commit runs clone (default: HEAD of this checkout; CI passes "
        "the commit its tests passed on)",
    )
    apply.add_argument(
        "--git-token",
        default=os.environ.get("DATA_PIPELINES_GIT_TOKEN"),
        help="prefect: token for a private repository (default: $DATA_PIPELINES_GIT_TOKEN, "
        "which keeps it off the command line)",
    )

    # `--debug` after the command too (`data-pipelines verify --debug`); SUPPRESS keeps a
    # `--debug` given before the command when the command's own is absent.
    for command in sub.choices.values():
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


def report_failure(error: BaseException, debug: bool) -> int:
    """One line on stderr (the cause and its fix), the traceback only when debugging."""
    if isinstance(error, exchange_rate_dates.InvalidDateError) and not debug:
        # a typo: answered without importing dlt (pipelines.errors does), as fast as it can be
        print(str(error), file=sys.stderr)
        return 2  # pipelines.errors.EXIT_PERMANENT
    from pipelines import errors

    unreachable = _prefect_api_unreachable(error)
    if unreachable is not None and not (debug or errors.debug_requested()):
        print(unreachable, file=sys.stderr)
        return errors.EXIT_TRANSIENT
    return errors.report_failure(error, debug)


def _prefect_api_unreachable(error: BaseException) -> str | None:
    """The one line for a run whose Prefect API stopped answering after the up-front check.

    Prefect raises the transport's own error (`ConnectionRefusedError: [Errno 111] ...`) when
    it cannot create or update the flow run; said as what it is, it is transient.
    """
    if "prefect" not in sys.modules or "httpx" not in sys.modules:
        return None
    import httpx

    from environments.run_guard import prefect_api_url, unreachable_message
    from pipelines.errors import exception_chain

    api_url = prefect_api_url()
    if api_url is None:
        return None
    for link in exception_chain(error):
        if not isinstance(link, httpx.TransportError):
            continue
        try:
            url = str(link.request.url)
        except RuntimeError:  # no request attached
            url = api_url
        if url.startswith(api_url.rstrip("/")):
            return unreachable_message(api_url, "the run stopped; rerunning it is safe")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # the connector's notice would print on every command that opens a Snowflake session
    # (apply snowflake, rehearse, verify, query), not only those that configure dlt's runtime
    quiet_snowflake_logout_notice()
    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")
    try:
        preflight(args)  # bad input refused before anything starts
        return int(COMMANDS[args.command](args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        return report_failure(error, debug)


if __name__ == "__main__":
    sys.exit(main())
