"""`data-pipelines`: the operator's own verbs. Prefect's and dlt's CLIs stay theirs.

Run `data-pipelines --help` for the manual, `data-pipelines COMMAND --help` for one verb.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from sources import exchange_rate_dates
from sources.errors import PermanentSourceError, TransientSourceError

DESCRIPTION = """\
data-pipelines: dlt pipelines (Open Exchange Rates, the PostgreSQL products audit log) into a
warehouse, orchestrated by Prefect.

Environments: DATA_PIPELINES_ENV=local (default: DuckDB files and a bucket folder under
DATA_PIPELINES_DATA_DIR, default ./.data) or production (Snowflake and S3, credentials from
dlt config: .dlt/secrets.toml, environment variables, AWS Secrets Manager).

Typical local session:
  data-pipelines demo            bring the stack up, run all five deployments once, summarise
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

# The demo's backfill covers one week, not up to yesterday.
DEMO_PARAMETERS: dict[str, dict[str, Any]] = {
    "exchange-rates-backfill/production": {"start_date": "2026-01-01", "end_date": "2026-01-07"}
}
# Verification runs after the loads on its schedule; the demo triggers the loads only.
DEMO_SKIPS_TAG = "verify"


def demo_deployments() -> list[tuple[str, dict[str, Any]]]:
    """The pipeline deployments of prefect.yaml, with the demo's parameters."""
    from infra.prefect_setup import deployments

    return [
        (spec.full_name, DEMO_PARAMETERS.get(spec.full_name, spec.parameters))
        for spec in deployments()
        if DEMO_SKIPS_TAG not in spec.tags
    ]


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from pipelines.text_table import text_table

    print("\n".join(text_table(headers, rows)))


# ---- stack -------------------------------------------------------------------------------


def cmd_up(args: argparse.Namespace) -> int:
    from local_stack import stack

    running = stack.up()
    _print_stack(running)
    return 0


def _print_stack(running: Any) -> None:
    from local_stack.stack import shell_env_file

    print(f"Prefect UI:      {running.prefect_ui_url}")
    print(f"Prefect API:     {running.prefect_api_url}")
    print(f"OXR API:         {running.oxr_base_url}")
    print(f"PostgreSQL:      {running.postgres_address}")
    for note in running.notes:
        print(f"Note: {note}")
    print(f"Shell setup:     source {shell_env_file()}")


def cmd_down(args: argparse.Namespace) -> int:
    from local_stack import stack

    stopped = stack.down()
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    from local_stack import stack

    _print_table(["service", "status"], sorted(stack.status().items()))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: stack up, each deployment once, wait, one summary table."""
    from local_stack import stack

    started = time.monotonic()
    print("Starting the local stack (first start takes about a minute)...", flush=True)
    running = stack.up()
    deployments = demo_deployments()
    print(
        f"Stack up in {time.monotonic() - started:.0f}s. "
        f"Triggering the {len(deployments)} pipeline deployments."
    )
    results = _run_deployments(running.prefect_api_url, deployments, timeout=args.timeout)
    print()
    loaded = _rows_loaded_per_run(running.prefect_api_url, [run_id for *_, run_id in results])
    _print_table(
        ["deployment", "state", "duration", "rows loaded (from the run report)", "flow run"],
        [
            (name, state, f"{secs:.0f}s", loaded.get(run_id, "-"), run_id)
            for name, state, secs, run_id in results
        ],
    )
    print()
    _print_warehouse_counts()
    print()
    _print_stack(running)
    print(f"Finished in {time.monotonic() - started:.0f}s.")
    print("Stop with `data-pipelines down`; run again with the same command (idempotent).")
    return 0 if all(state == "Completed" for _, state, _, _ in results) else 1


def cmd_rehearse(args: argparse.Namespace) -> int:
    """Production, unchanged, on stand-ins: all deployments, data-freshness, one summary."""
    from local_stack import rehearsal

    if args.stop:
        stopped = rehearsal.stop()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    started = time.monotonic()
    print("Rehearsing production on stand-ins on 127.0.0.1 (fresh each time)...", flush=True)
    ok = False
    try:
        run = rehearsal.start()
        for note in run.notes:
            print(f"Note: {note}")
        loads = _run_deployments(run.prefect_api_url, demo_deployments(), timeout=args.timeout)
        query = rehearsal.admin_query(run.stand_ins)
        scenarios = _overlap_scenarios(run, query)
        objects = rehearsal.wait_for_pipe(run.stand_ins, query)
        from infra.prefect_setup import deployments

        checks = [(s.full_name, s.parameters) for s in deployments() if DEMO_SKIPS_TAG in s.tags]
        results = loads + _run_deployments(run.prefect_api_url, checks, timeout=args.timeout)
        print()
        _print_table(
            ["deployment", "final state", "duration", "flow run"],
            [(name, state, f"{secs:.0f}s", run_id) for name, state, secs, run_id in results],
        )
        print()
        counts = []
        for table in rehearsal.TABLES:
            try:
                counts.append((table, query(f"select count(*) from {table}")))
            except Exception as error:  # a missing table is a finding, not a crash
                counts.append((table, f"missing: {str(error).splitlines()[0][:80]}"))
        _print_table(["Snowflake stand-in table", "rows"], counts)
        print(f"\nObjects under s3://{run.stand_ins.bucket}/exchange-rates/: {objects}")
        code, report = rehearsal.verify_output(run)
        print("\n" + report)
        ok = (
            code == 0
            and all(state == "Completed" for _, state, _, _ in results)
            and all(scenario.ok for scenario in scenarios)
        )
    finally:
        if not args.keep:
            rehearsal.stop()
    print(f"Rehearsal {'passed' if ok else 'FAILED'} in {time.monotonic() - started:.0f}s.")
    if args.keep:
        print("Still running (--keep): stop with `data-pipelines rehearse --stop`.")
    else:
        print("Everything it started is stopped; logs in .data/rehearsal/stack/logs.")
    return 0 if ok else 1


def _overlap_scenarios(run: Any, query: Callable[[str], int]) -> list[Any]:
    """Runs of one pipeline started at once, from two workers and the CLI; one line each."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from local_stack import rehearsal, rehearsal_scenarios

    print("\nOverlap scenarios (two workers, a fresh folder per run, the operator's CLI):")
    with temporary_settings(updates={PREFECT_API_URL: run.prefect_api_url}):
        results = rehearsal_scenarios.run_scenarios(
            run.stand_ins,
            run.env,
            rehearsal.rehearsal_dir() / "operator",
            query,
            rehearsal.staging_gate(),
        )
    for result in results:
        print(f"- {result.name}: {'ok' if result.ok else 'FAILED'}")
        for line in result.lines:
            print(line)
    return results


def _run_deployments(
    api_url: str, deployments: Sequence[tuple[str, dict[str, Any]]], timeout: float
) -> list[tuple[str, str, float, str]]:
    from prefect.settings import PREFECT_API_URL, temporary_settings

    # A settings context: Prefect read its settings when first imported, before the stack
    # knew its port, so changing os.environ now would go unnoticed.
    with temporary_settings(updates={PREFECT_API_URL: api_url}):
        return _trigger_and_wait(deployments, timeout)


def _trigger_and_wait(
    deployments: Sequence[tuple[str, dict[str, Any]]], timeout: float
) -> list[tuple[str, str, float, str]]:
    from prefect.client.orchestration import get_client
    from prefect.deployments import run_deployment

    runs = {}
    for name, parameters in deployments:
        flow_run = run_deployment(name=name, parameters=parameters, timeout=0)
        runs[name] = (flow_run.id, time.monotonic())
        print(f"  triggered {name} (flow run {flow_run.id})", flush=True)
    finished: dict[str, tuple[str, float, str]] = {}
    deadline = time.monotonic() + timeout
    last_report = 0.0
    with get_client(sync_client=True) as client:
        while len(finished) < len(runs) and time.monotonic() < deadline:
            for name, (run_id, t0) in runs.items():
                if name in finished:
                    continue
                state = client.read_flow_run(run_id).state
                if state is not None and state.is_final():
                    finished[name] = (state.name, time.monotonic() - t0, str(run_id))
                    print(f"  {name}: {state.name}", flush=True)
            if time.monotonic() - last_report > 15:
                print(f"  {len(finished)}/{len(runs)} finished...", flush=True)
                last_report = time.monotonic()
            time.sleep(1)
        for name, (run_id, t0) in runs.items():
            if name not in finished:
                state = client.read_flow_run(run_id).state
                finished[name] = (
                    f"{state.name if state else 'Unknown'} (timed out)",
                    time.monotonic() - t0,
                    str(run_id),
                )
    return [(name, *finished[name]) for name, _ in deployments]


def _rows_loaded_per_run(api_url: str, flow_run_ids: Sequence[str]) -> dict[str, str]:
    """`table=rows` per flow run, read from the report artifact each run published."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from flows.reporting import NOTHING_NEW

    loaded: dict[str, str] = {}
    with (
        temporary_settings(updates={PREFECT_API_URL: api_url}),
        get_client(sync_client=True) as client,
    ):
        for run_id in flow_run_ids:
            artifacts = client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[run_id]))
            )
            counts: dict[str, int] = {}
            quiet = False
            for artifact in artifacts:
                if artifact.type != "table" or not artifact.key or not artifact.data:
                    continue
                data = (
                    json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
                )
                for row in data if isinstance(data, list) else []:
                    if not isinstance(row, dict) or not isinstance(row.get("rows_loaded"), int):
                        continue
                    if row.get("table") == NOTHING_NEW:
                        quiet = True
                        continue
                    table = str(row.get("table"))
                    counts[table] = counts.get(table, 0) + row["rows_loaded"]
            loaded[run_id] = ", ".join(f"{t}={n}" for t, n in sorted(counts.items())) or (
                "0 (nothing new)" if quiet else "-"
            )
    return loaded


def _print_warehouse_counts() -> None:
    from local_stack.warehouse import LOCAL_TABLES, table_counts, warehouse_files

    counts = table_counts()
    _print_table(["table", "rows"], [(t, counts.get(t, "missing")) for t in LOCAL_TABLES])
    print()
    print("Where the data is: " + ", ".join(str(p) for p in warehouse_files()))
    print('Query it: data-pipelines query "select * from DLT.OPEN_EXCHANGE_RATES.CURRENCIES"')


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


def cmd_run(args: argparse.Namespace) -> int:
    flows: dict[str, Callable[[], Any]] = {}
    if args.pipeline == "currencies":
        from flows.currencies import currencies_weekly_flow

        flows["currencies"] = currencies_weekly_flow
    elif args.pipeline == "exchange-rates":
        from flows.exchange_rates import exchange_rates_daily_flow

        flows["exchange-rates"] = exchange_rates_daily_flow
    elif args.pipeline == "products":
        from flows.products import products_daily_flow, products_full_refresh_flow

        flows["products"] = products_full_refresh_flow if args.full_refresh else products_daily_flow
    _console_without_tracebacks(args)
    result = flows[args.pipeline]()
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    from flows.exchange_rates import exchange_rates_backfill_flow

    _console_without_tracebacks(args)
    result = exchange_rates_backfill_flow(start_date=args.start_date, end_date=args.end_date)
    print(json.dumps(result, indent=2, default=str))
    return 0


def cmd_simulate_day(args: argparse.Namespace) -> int:
    from local_stack import postgres, products_data

    dsn = args.dsn or postgres.ensure_running().dsn
    counts = products_data.simulate_day(dsn)
    print(json.dumps(counts, indent=2, default=str))
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check what users read in the current environment; exit 1 listing what failed."""
    from environments import load_environment
    from pipelines.verify import verify

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
    from environments import load_environment

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
    _print_table(columns, rows)
    return 0


def _is_bad_sql(error: BaseException) -> bool:
    """A refusal of the SQL (DuckDB's parser/catalog/binder, dlt's terminal SQL errors)."""
    import duckdb
    from dlt.destinations.exceptions import DatabaseTerminalException, DatabaseUndefinedRelation

    bad = (duckdb.ParserException, duckdb.CatalogException, duckdb.BinderException)
    return isinstance(error, (*bad, DatabaseTerminalException, DatabaseUndefinedRelation))


def cmd_apply(args: argparse.Namespace) -> int:
    if args.target == "prefect":
        from infra import prefect_setup

        for line in prefect_setup.ensure_work_pools():
            print(line)
        for line in prefect_setup.ensure_pipeline_concurrency_limits():
            print(line)
        if args.git_repository:
            commit = args.git_commit or prefect_setup.current_commit()
            for line in prefect_setup.ensure_git_settings(
                args.git_repository, commit, args.git_token
            ):
                print(line)
        return 0
    if args.target == "alerting":
        from infra import alerting

        # Secrets from dlt config ([alerting]: environment, secrets.toml, Secrets Manager).
        for line in alerting.apply():
            print(line)
        return 0
    from infra import snowflake

    return snowflake.apply(dry_run=args.dry_run)


# ---- parser -------------------------------------------------------------------------------


DEBUG_HELP = f"on failure also print the traceback (or set {DEBUG_ENV}=1)"


def version_text() -> str:
    """`data-pipelines 0.1.0 (dlt 1.31.0, prefect 3.x, Python 3.11.x)`, from installed metadata."""
    from importlib.metadata import PackageNotFoundError, version

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
        help="the main job: start the local stack, run all five deployments once, summarise",
        description="Start the local stack (OXR sandbox, PostgreSQL, Prefect server, work pool, "
        "deployments, worker), trigger each of the five deployments once (the backfill over "
        "2026-01-01..2026-01-07), wait, and print one summary. Idempotent.",
    )
    demo.add_argument("--timeout", type=float, default=600, help="seconds to wait for the runs")
    demo.set_defaults(func=cmd_demo)

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
    rehearse.set_defaults(func=cmd_rehearse)

    sub.add_parser(
        "up",
        help="start the local stack and deploy (idempotent)",
        description="Start the local stack: the OXR sandbox, PostgreSQL with seeded "
        "raw_data.products, a Prefect server, the `production` work pool, the five deployments "
        "and a worker. Prints the addresses and a file to `source` for Prefect's CLI. Starting "
        "it again leaves what runs alone.",
    ).set_defaults(func=cmd_up)
    sub.add_parser(
        "down",
        help="stop the local stack; data stays",
        description="Stop what `up` or `demo` started. The data folder (warehouse files, "
        "bucket, dlt state) stays; `up` resumes with it.",
    ).set_defaults(func=cmd_down)
    sub.add_parser(
        "status",
        help="what of the local stack is running",
        description="One line per local service (Prefect server, worker, OXR sandbox, "
        "PostgreSQL) and whether it runs.",
    ).set_defaults(func=cmd_status)

    run = sub.add_parser(
        "run",
        help="run one pipeline's flow now, in this process",
        description="Run one pipeline's flow in this process, against the environment's "
        "warehouse (DATA_PIPELINES_ENV), and print its summary. Production needs the Prefect "
        "API the workers use (PREFECT_API_URL): the run holds its pipeline's one-run limit there.",
    )
    run.add_argument(
        "pipeline",
        choices=["currencies", "exchange-rates", "products"],
        help="currencies: OXR currencies.json; exchange-rates: OXR latest.json (the daily "
        "run); products: the PostgreSQL audit log, incremental",
    )
    run.add_argument(
        "--full-refresh", action="store_true", help="products: reload everything, reset cursor"
    )
    run.set_defaults(func=cmd_run)

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
    backfill.set_defaults(func=cmd_backfill)

    simulate = sub.add_parser(
        "simulate-day",
        help="write a day of INSERT/UPDATE/DELETE audit rows to raw_data.products",
        description="Write one day of application activity (inserts, updates, deletes) as "
        "audit rows into raw_data.products, so the next products run has something to load.",
    )
    simulate.add_argument("--dsn", help="PostgreSQL DSN (default: the local cluster)")
    simulate.set_defaults(func=cmd_simulate_day)

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
    query.set_defaults(func=cmd_query)

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
    verify.set_defaults(func=cmd_verify)

    apply = sub.add_parser(
        "apply",
        help="apply platform as code: Prefect, alerting or Snowflake",
        description="prefect: work pools, one global concurrency limit per dlt pipeline "
        "(dlt-pipeline:<name>, limit 1) and git settings. alerting: the Slack and PagerDuty "
        "webhook blocks (from [alerting] slack_webhook_url, pagerduty_integration_key in dlt "
        "config) and the failure automations; idempotent. snowflake: the versioned DDL.",
    )
    apply.add_argument(
        "target",
        choices=["prefect", "alerting", "snowflake"],
        help="what to apply: prefect (pools, limits, git settings), alerting (blocks, "
        "automations) or snowflake (the DDL in infra/snowflake/)",
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
    apply.set_defaults(func=cmd_apply)

    # `--debug` after the command too (`data-pipelines verify --debug`); SUPPRESS keeps a
    # `--debug` given before the command when the command's own is absent.
    for command in sub.choices.values():
        command.add_argument(
            "--debug", action="store_true", default=argparse.SUPPRESS, help=DEBUG_HELP
        )
    return parser


def _check_oxr_key() -> None:
    """Set, shaped like an app id, and accepted by OXR: one `usage.json` request, no retries."""
    from sources.exchange_rates import resolve_settings
    from sources.open_exchange_rates.client import check_api_key

    settings = resolve_settings()
    check_api_key(settings.api_key, settings.base_url)


def _check_products_source() -> None:
    """Lookback, DSN, credentials, table and column types, as the run would refuse them."""
    from environments import load_environment
    from pipelines.products import products_dsn
    from sources.errors import ConfigurationError
    from sources.products import (
        PostgresUnavailableError,
        check_source,
        configured_lookback,
        configured_table,
        parse_lookback,
    )

    lookback = configured_lookback()
    parse_lookback(lookback)  # no connection needed to refuse a typo
    schema_name, table_name = configured_table()
    try:
        check_source(products_dsn(load_environment()), schema_name, table_name, lookback)
    except PostgresUnavailableError as error:
        # Nothing has started, so nothing retries it here: say what to check.
        raise ConfigurationError(
            f"{error}. Check host and port in [sources.products] credentials "
            "(SOURCES__PRODUCTS__CREDENTIALS) or start the database, then rerun."
        ) from None


def _check_environment_name() -> None:
    """`DATA_PIPELINES_ENV` names a known environment (no dlt import, no file)."""
    from environments import environment_name

    environment_name()


def _check_one_data_folder() -> None:
    """An explicit data folder holds everything: no dlt folder exported elsewhere splits it.

    `DATA_PIPELINES_DATA_DIR` moves the bucket, dlt's state and the warehouse together (dlt's
    folders follow it). A `DLT_DATA_DIR` or `DLT_LOCAL_DIR` exported outside it (e.g. by a
    stack.env written before they stopped being exported) would send part of a run elsewhere.
    """
    from pathlib import Path

    from sources.errors import ConfigurationError

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


def _check_run_guard_api() -> None:
    """Production runs hold their pipeline on the operator's Prefect API, never a temporary one."""
    from environments import environment_name
    from sources.errors import ConfigurationError

    if environment_name() != "production":
        return
    from environments.run_guard import prefect_api_url

    if prefect_api_url() is None:
        raise ConfigurationError(
            "No Prefect API for a production run: it holds its pipeline's one-run limit on "
            "the Prefect server the workers use. Export PREFECT_API_URL (and PREFECT_API_KEY on "
            "Prefect Cloud) as for `prefect deployment run`, or `prefect profile use` that "
            "server's profile, then rerun."
        )


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
        exchange_rate_dates.validate_date_range(args.start_date, args.end_date)
    if args.command in _USES_ENVIRONMENT:
        _check_environment_name()
    if args.command in _USES_DATA_FOLDER:
        _check_one_data_folder()
    if args.command in ("run", "backfill"):
        _check_run_guard_api()
    uses_oxr = args.command == "backfill" or getattr(args, "pipeline", None) in (
        "currencies",
        "exchange-rates",
    )
    if uses_oxr:
        _check_oxr_key()
    if getattr(args, "pipeline", None) == "products":
        _check_products_source()


def report_failure(error: BaseException, debug: bool) -> int:
    """One line on stderr (the cause and its fix), the traceback only when debugging."""
    if isinstance(error, exchange_rate_dates.InvalidDateError) and not debug:
        # a typo: answered without importing dlt (pipelines.errors does), as fast as it can be
        print(str(error), file=sys.stderr)
        return 2  # pipelines.errors.EXIT_PERMANENT
    from pipelines import errors

    return errors.report_failure(error, debug)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    debug = args.debug or os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes")
    try:
        preflight(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except Exception as error:
        return report_failure(error, debug)


if __name__ == "__main__":
    sys.exit(main())
