"""No secret anywhere, with or without --debug; bad input refused before anything.

Every case runs the real console script (`.venv/bin/data-pipelines`) in a fresh process with
the secret in its environment, then searches everything it produced for the secret: stdout and
stderr (tracebacks and chained exceptions included, `--debug` on), every file under the data
folder (bytes, also percent-encoded) and, for runs on the session's Prefect server, the run's
logs and artifacts there. `test_the_search_finds_a_secret_that_is_there` is the positive
control: the same search, on output and a file that do hold the secret, finds it.

Bad input: one stderr line, exit 2, no file written in an empty data folder, and for the checks
that need no network a generous bound (the figure is printed; `-s` shows it).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from dev_stack.oxr_sandbox import OXRSandbox
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)

# The console script of this venv, as an operator runs it.
CLI = str(Path(sys.executable).parent / "data-pipelines")
PROJECT_DIR = Path(__file__).resolve().parent.parent
PASSWORD = "pw-7fK3q9-must-never-print"
KEY = "oxrkey9f8e7d6c5b4a3f2e1d0c9b8a7f6e5"
SNOWFLAKE_PASSWORD = "sf-Xq82-must-never-print"
# "Answered at once, before any network" is shown by what the CLI says, not by a stopwatch: the
# cause on one line is the input check's own, which the preflight makes before the Prefect API,
# OXR or PostgreSQL are asked (a check that reached them would answer with their error), and a
# retried run would log more lines. (A time bound failed beside a busy suite: the CLI's start
# alone took 10 s at load average 10.)


def cli_env(data: Path, **env: str) -> dict[str, str]:
    """The parent environment without our settings, then an empty data folder and `env`."""
    environment = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SOURCES__", "OXR_", "DATA_PIPELINES_", "DLT_", "DESTINATION__"))
        and k not in ("PREFECT_API_URL", "PREFECT_HOME")
    }
    environment.update(
        DATA_PIPELINES_DATA_DIR=str(data),
        RUNTIME__DLTHUB_TELEMETRY="false",
        DO_NOT_TRACK="1",
        PREFECT_SERVER_ANALYTICS_ENABLED="false",
        **env,
    )
    return environment


def run(command: list[str], data: Path, **env: str) -> tuple[int, str, str, float]:
    started = time.monotonic()
    done = subprocess.run(
        command,
        cwd=PROJECT_DIR,
        env=cli_env(data, **env),
        capture_output=True,
        text=True,
        timeout=180,
    )
    elapsed = time.monotonic() - started
    print(f"{' '.join(command[-3:])}: exit {done.returncode} in {elapsed:.2f} s")
    return done.returncode, done.stdout, done.stderr, elapsed


def written(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


def found(secret: str, texts: dict[str, str], folder: Path | None = None) -> list[str]:
    """Where the secret (as given or percent-encoded) appears: output names and file paths."""
    forms = {secret, quote(secret, safe="")}
    places = [name for name, text in texts.items() if any(f in text for f in forms)]
    for path in written(folder) if folder else []:
        content = path.read_bytes()
        if any(f.encode() in content for f in forms):
            places.append(str(path))
    return places


def test_the_search_finds_a_secret_that_is_there(tmp_path: Path) -> None:
    """Positive control: the environment the CLI gets holds the secret, and the search sees it."""
    data = tmp_path / "data"
    dsn = f"postgresql://loader:{PASSWORD}@127.0.0.1:1/shop"
    echo = (
        "import os, pathlib, sys\n"
        "dsn = os.environ['SOURCES__PRODUCTS__CREDENTIALS']\n"
        "print(dsn); print(os.environ['SOURCES__OPEN_EXCHANGE_RATES__API_KEY'], file=sys.stderr)\n"
        "folder = pathlib.Path(os.environ['DATA_PIPELINES_DATA_DIR']); folder.mkdir()\n"
        "(folder / 'leak.bin').write_bytes(b'\\x00' + dsn.encode() + b'\\x00')\n"
    )
    _, out, err, _ = run(
        [sys.executable, "-c", echo],
        data,
        SOURCES__PRODUCTS__CREDENTIALS=dsn,
        SOURCES__OPEN_EXCHANGE_RATES__API_KEY=KEY,
    )
    assert found(PASSWORD, {"stdout": out, "stderr": err}, data) == [
        "stdout",
        str(data / "leak.bin"),
    ]
    assert found(KEY, {"stdout": out, "stderr": err}) == ["stderr"]


@pytest.mark.parametrize(
    ("dsn", "cause"),
    [
        (f"mysql://user:{PASSWORD}@db.example/shop", "[sources.products] credentials (env "),
        (f"postgresql://user:{PASSWORD}@127.0.0.1:1/shop?colour=blue", "[sources.products]"),
        (f"postgresql://user:{PASSWORD}@127.0.0.1:1/shop?sslmode=bogus", "[sources.products]"),
        (f"postgresql://user:{PASSWORD}@127.0.0.1:99999/shop", "[sources.products]"),
        (f"postgresql://user:{PASSWORD}@[::1/shop", "[sources.products]"),
        (f"postgresql://user:{PASSWORD}@127.0.0.1:1/shop", "PostgreSQL at 127.0.0.1:1"),
    ],
    ids=["bad-scheme", "bad-option", "bad-option-value", "bad-port", "unparsable", "unreachable"],
)
def test_no_dsn_password_in_debug_output_for_any_dsn_shape(
    dsn: str, cause: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for debug in ([], ["--debug"]):
        code, out, err, _ = run(
            [CLI, *debug, "run", "products"], data, SOURCES__PRODUCTS__CREDENTIALS=dsn
        )
        assert code == 2, err
        assert err.splitlines()[-1].startswith(cause), err
        assert len(err.splitlines()) == 1 or debug, err
        assert ("Traceback" in err) == bool(debug)
        assert "During handling of the above exception" not in err
        assert found(PASSWORD, {"stdout": out, "stderr": err}, data) == []
        assert written(data) == []


@pytest.mark.parametrize("wrong", ["password", "database"])
def test_wrong_password_or_database_is_refused_up_front_without_the_password(
    wrong: str,
    products_database: ProductsDatabase,  # noqa: F811
    tmp_path: Path,
) -> None:
    parts = urlsplit(products_database.dsn)
    if wrong == "password":
        secret = PASSWORD
        dsn = parts._replace(netloc=f"{parts.username}:{secret}@{parts.hostname}:{parts.port}")
    else:  # the cluster's real password, to a database that does not exist
        secret = str(parts.password)
        dsn = parts._replace(path="/no_such_database")
    data = tmp_path / "data"
    code, out, err, _ = run(
        [CLI, "--debug", "run", "products"], data, SOURCES__PRODUCTS__CREDENTIALS=dsn.geturl()
    )
    assert code == 2
    expected = "the password or user is wrong" if wrong == "password" else "does not exist"
    assert expected in err.splitlines()[-1], err
    assert "During handling of the above exception" not in err
    assert found(secret, {"stdout": out, "stderr": err}, data) == []
    assert written(data) == []


@pytest.fixture(scope="module")
def keyed_sandbox() -> Iterator[OXRSandbox]:
    """An OXR sandbox that accepts only KEY (the session's accepts the shared sandbox id)."""
    with OXRSandbox(port=0, app_ids=(KEY,)) as sandbox:
        yield sandbox


@pytest.mark.parametrize(
    ("key", "cause"),
    [
        (f"Token {KEY}", "Open Exchange Rates configuration: HTTP 401 invalid_app_id: the "),
        (KEY[::-1], "Open Exchange Rates usage.json: HTTP 401 invalid_app_id"),
    ],
    ids=["bad-shape", "rejected-by-oxr"],
)
def test_a_bad_oxr_key_is_one_request_exit_2_and_never_printed(
    key: str, cause: str, keyed_sandbox: OXRSandbox, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    for debug in ([], ["--debug"]):
        keyed_sandbox.reset()
        code, out, err, _ = run(
            [CLI, *debug, "run", "currencies"],
            data,
            SOURCES__OPEN_EXCHANGE_RATES__API_KEY=key,
            SOURCES__OPEN_EXCHANGE_RATES__BASE_URL=keyed_sandbox.base_url,
        )
        assert code == 2
        assert err.splitlines()[-1].startswith(cause), err
        assert len(err.splitlines()) == 1 or debug, err
        # the shape is checked without a request; OXR's verdict costs one free request
        expected = 0 if key.startswith("Token ") else 1
        assert keyed_sandbox.request_count() == expected
        assert keyed_sandbox.request_count("/api/usage.json") == expected
        for secret in {key, KEY}:
            assert found(secret, {"stdout": out, "stderr": err}, data) == []
        assert written(data) == []


def test_no_snowflake_password_when_the_warehouse_is_unreachable(tmp_path: Path) -> None:
    data = tmp_path / "data"
    credentials = (
        f"snowflake://loader:{SNOWFLAKE_PASSWORD}@127.0.0.1:1/DLT"
        "?warehouse=LOADING&role=LOADER&login_timeout=2"
    )
    code, out, err, _ = run(
        [CLI, "--debug", "verify"],
        data,
        DATA_PIPELINES_ENV="production",
        DESTINATION__SNOWFLAKE__CREDENTIALS=credentials,
    )
    assert code == 1, err  # verify ran and reports the warehouse's checks as failed
    # connector 4 says "Could not connect to Snowflake", connector 5 "Failed to login"
    assert re.search("Could not connect to Snowflake|Failed to login", out + err), out + err
    assert found(SNOWFLAKE_PASSWORD, {"stdout": out, "stderr": err}, data) == []


@pytest.mark.parametrize(
    ("args", "env", "cause"),
    [
        (
            ["run", "products"],
            {"DATA_PIPELINES_ENV": "staging"},
            "DATA_PIPELINES_ENV='staging' is not a known environment",
        ),
        (
            ["run", "currencies"],
            {"DATA_PIPELINES_ENV": "staging", "SOURCES__OPEN_EXCHANGE_RATES__API_KEY": KEY},
            "DATA_PIPELINES_ENV='staging' is not a known environment",
        ),
        (
            ["run", "products"],
            {"SOURCES__PRODUCTS__LOOKBACK": "soon"},
            "[sources.products] lookback='soon' is not a duration",
        ),
        (
            ["run", "products"],
            {"DLT_LOCAL_DIR": "/tmp/elsewhere-warehouse"},
            "DLT_LOCAL_DIR=/tmp/elsewhere-warehouse is outside DATA_PIPELINES_DATA_DIR=",
        ),
        (
            ["backfill", "2026-02-30"],
            {},
            "start_date='2026-02-30' is not a valid date",
        ),
    ],
    ids=["environment-run-products", "environment-run-currencies", "lookback", "split", "date"],
)
def test_bad_input_needing_no_network_is_refused_at_once(
    args: list[str], env: dict[str, str], cause: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    code, _, err, _ = run([CLI, *args], data, **env)
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith(cause), err
    assert written(data) == []


@pytest.mark.parametrize(
    ("setting", "value", "cause"),
    [
        ("SOURCES__PRODUCTS__TABLE_NAME", "nope", "Table raw_data.nope does not exist in "),
        ("SOURCES__PRODUCTS__SCHEMA_NAME", "elsewhere", "Table elsewhere.products does not exist"),
    ],
    ids=["table", "schema"],
)
def test_a_missing_products_table_is_refused_before_anything_is_written(
    setting: str,
    value: str,
    cause: str,
    products_database: ProductsDatabase,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    seeded_source(products_database, monkeypatch, rows=10, lookback=None)
    data = tmp_path / "data"
    code, out, err, _ = run(
        [CLI, "run", "products"],
        data,
        SOURCES__PRODUCTS__CREDENTIALS=products_database.dsn,
        **{setting: value},
    )
    assert code == 2
    assert err.splitlines() == [err.strip()] and err.startswith(cause), err
    assert "prefect" not in out.lower() + err.lower()  # no temporary server was started
    assert written(data) == []
