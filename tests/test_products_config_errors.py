"""PostgreSQL configuration errors are permanent and name the setting; outages stay transient.

Every case runs the products pipeline against the session's real cluster (or a loopback socket
standing in for a server that never answers) and checks the classification the flows' retry
policy uses (`is_permanent`), the first line of the message, and that the password appears
nowhere: not in the message, not in the formatted exception chain.
"""

# Fixtures are imported from tests.fixtures.postgres and requested by name (F811).
# ruff: noqa: F811

from __future__ import annotations

import socket
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from dev_stack.processes import free_port
from pipelines.errors import exception_chain, is_permanent, root_cause_message
from sources.errors import PermanentSourceError, TransientSourceError
from tests.fixtures.postgres import (  # noqa: F401
    ProductsDatabase,
    postgres_cluster,
    products_database,
    seeded_source,
)
from tests.fixtures.postgres import run_products as run


def _with(dsn: str, **changes: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(**changes))


def _netloc(dsn: str, port: str | None = None, user: str | None = None, pw: str = "") -> str:
    parts = urlsplit(dsn)
    return f"{user or parts.username}:{pw or parts.password}@{parts.hostname}:{port or parts.port}"


# (case, how to spoil the DSN, words the first line of the message must contain)
PERMANENT_CASES: list[tuple[str, Callable[[str], str], tuple[str, ...]]] = [
    ("bad sslmode", lambda d: _with(d, query="sslmode=bogus"), ("sslmode='bogus'",)),
    ("sslmode the server lacks", lambda d: _with(d, query="sslmode=require"), ("sslmode",)),
    ("unknown URI option", lambda d: _with(d, query="colour=blue"), ("'colour'",)),
    ("bad option number", lambda d: _with(d, query="connect_timeout=soon"), ("connect_timeout",)),
    ("mysql:// scheme", lambda d: _with(d, scheme="mysql"), ("scheme 'mysql'",)),
    ("port out of range", lambda d: _with(d, netloc=_netloc(d, port="99999")), ("port",)),
    ("port not a number", lambda d: _with(d, netloc=_netloc(d, port="db")), ("port",)),
    ("unknown database", lambda d: _with(d, path="/no_such_database"), ("database",)),
    ("wrong password", lambda d: _with(d, netloc=_netloc(d, pw="Wr0ng-pw")), ("password",)),
    ("unknown user", lambda d: _with(d, netloc=_netloc(d, user="nobody")), ("user",)),
]


def _assert_no_secret(error: BaseException, secret: str) -> None:
    printed = "".join(traceback.format_exception(error))
    assert secret not in printed and secret not in root_cause_message(error)


@pytest.mark.parametrize(
    ("spoil", "words"), [c[1:] for c in PERMANENT_CASES], ids=[c[0] for c in PERMANENT_CASES]
)
def test_configuration_errors_are_permanent_and_name_the_setting(
    products_database: ProductsDatabase,
    data_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    spoil: Callable[[str], str],
    words: tuple[str, ...],
) -> None:
    seeded = seeded_source(products_database, monkeypatch, 10, lookback=None)
    monkeypatch.setenv("SOURCES__PRODUCTS__CREDENTIALS", spoil(seeded.dsn))
    with pytest.raises(Exception) as failure:
        run()
    error = failure.value
    assert is_permanent(error)  # the flows' retry policy: not retried
    assert any(isinstance(e, PermanentSourceError) for e in exception_chain(error))
    first_line = root_cause_message(error).splitlines()[0]
    assert first_line.startswith("[sources.products] credentials"), first_line
    assert all(word in first_line for word in words), first_line
    _assert_no_secret(error, seeded.cluster.password)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A loopback port that accepts connections and never answers (a hung server)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.listen(4)
        yield server.getsockname()[1]


def test_refused_and_timed_out_connections_are_transient(
    data_dir: Path, monkeypatch: pytest.MonkeyPatch, silent_server: int
) -> None:
    password = "Sup3r-Secret-pw"
    for port, extra, words in (
        (free_port(), "", "refused"),
        (silent_server, "?connect_timeout=1", "timeout"),
    ):
        monkeypatch.setenv(
            "SOURCES__PRODUCTS__CREDENTIALS",
            f"postgresql://loader:{password}@127.0.0.1:{port}/app{extra}",
        )
        with pytest.raises(Exception) as failure:
            run()
        error = failure.value
        assert not is_permanent(error)
        assert any(isinstance(e, TransientSourceError) for e in exception_chain(error))
        message = root_cause_message(error)
        assert "unreachable" in message and words in message.lower(), message
        _assert_no_secret(error, password)


def test_server_terminating_the_session_mid_query_is_transient(
    products_database: ProductsDatabase, data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What clients see when the server shuts down (or an admin kills the session): FATAL
    # 57P01 "terminating connection due to administrator command", during the COPY.
    seeded = seeded_source(products_database, monkeypatch, 10, lookback=None)
    with psycopg.connect(seeded.dsn, autocommit=True) as conn:
        conn.execute("ALTER TABLE raw_data.products RENAME TO products_base")
        conn.execute(
            "CREATE FUNCTION raw_data.end_my_session() RETURNS boolean LANGUAGE sql AS "
            "'SELECT pg_terminate_backend(pg_backend_pid())'"
        )
        conn.execute(
            "CREATE VIEW raw_data.products AS SELECT * FROM raw_data.products_base "
            "WHERE raw_data.end_my_session()"
        )
    with pytest.raises(Exception) as failure:
        run()
    error = failure.value
    assert not is_permanent(error), root_cause_message(error)
    assert any(isinstance(e, TransientSourceError) for e in exception_chain(error))
    assert "administrator command" in root_cause_message(error)
