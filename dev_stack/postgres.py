"""A throwaway PostgreSQL cluster for the local default and the tests.

Built from the system's PostgreSQL binaries (Debian: `/usr/lib/postgresql/<v>/bin`, override with
`DATA_PIPELINES_PG_BIN`). Everything lives under one folder, by default
`data_dir()/postgres`:

    postgres/
      cluster.json   port, user, password, database (mode 0600, readable by us only)
      pgdata/        the cluster (owned by the server user)
      log/           server log

`initdb` and `postgres` refuse to run as root, so when we are root the server runs as the
`postgres` user (`runuser -u postgres --`) on folders chowned to it. It listens on 127.0.0.1
only, on a free port chosen once and recorded, with no Unix socket (socket paths under a deep
data folder exceed the 107-byte limit). Host connections need a password (scram-sha-256),
so the DSN we hand out carries a real secret and the code paths that must hide it are tested.

`ensure_running()` is idempotent and safe across processes (a file lock): start twice = one
cluster, same port. Durability is traded for speed (`fsync=off`): this cluster is disposable.

CLI: `python -m dev_stack.postgres start | stop | status | dsn` (seed with
`python -m dev_stack.products_data seed`; `data-pipelines up` does both).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path

from dev_stack.processes import free_port, port_is_free
from local_runtime.cluster import (
    DEFAULT_DATABASE,
    HOST,
    RECORD_FILE,
    LocalPostgres,
    cluster_from_record,
    read_record,
)
from local_runtime.cluster import recorded as _recorded
from pipelines.environment import data_dir
from pipelines.locks import file_lock

SUPERUSER = "postgres"
SERVER_OS_USER = "postgres"
PG_BIN_VAR = "DATA_PIPELINES_PG_BIN"
START_TIMEOUT_SECONDS = 60

# Disposable cluster: durability off, enough memory for the benchmark's bulk seeding.
SERVER_SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    "unix_socket_directories": "''",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_wal_size": "'4GB'",
    "shared_buffers": "'256MB'",
    "maintenance_work_mem": "'512MB'",
    "work_mem": "'64MB'",
    "log_min_messages": "warning",
    "timezone": "'UTC'",
}


class LocalPostgresError(RuntimeError):
    """The local cluster could not be created, started or stopped; the message says why."""


def default_root() -> Path:
    """`data_dir()/postgres`, or a folder the server user can reach when that one is not.

    As root the server runs as `postgres`, which cannot enter a folder below a private parent
    (a clone under /root, which is 0700). Then the cluster lives under /var/tmp, keyed by the
    data folder, and `data_dir()/postgres` is a symlink to it, so each data folder still has
    exactly one cluster and `rm -rf .data` plus `down` forgets it.
    """
    preferred = data_dir() / "postgres"
    if preferred.is_symlink():
        return preferred.resolve()
    if not _as_root() or _server_user_can_reach(preferred.parent):
        return preferred
    key = hashlib.sha1(str(data_dir()).encode()).hexdigest()[:12]
    relocated = Path("/var/tmp") / f"data-pipelines-postgres-{key}"
    relocated.mkdir(mode=0o755, parents=True, exist_ok=True)
    relocated.chmod(0o755)
    preferred.parent.mkdir(parents=True, exist_ok=True)
    if not preferred.exists():
        preferred.symlink_to(relocated, target_is_directory=True)
    return relocated


def _server_user_can_reach(folder: Path) -> bool:
    """Whether the server user may traverse every folder down to `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    check = subprocess.run(
        ["runuser", "-u", SERVER_OS_USER, "--", "test", "-x", str(folder)],
        capture_output=True,
        check=False,
    )
    return check.returncode == 0


def bin_dir() -> Path:
    """The folder with `initdb`, `pg_ctl` and `psql` of the newest installed PostgreSQL."""
    configured = os.environ.get(PG_BIN_VAR)
    if configured:
        return Path(configured)
    candidates = sorted(
        Path("/usr/lib/postgresql").glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    initdb = shutil.which("initdb")
    if initdb:
        return Path(initdb).parent
    raise LocalPostgresError(
        f"No PostgreSQL server binaries found: install postgresql or set {PG_BIN_VAR} to the "
        "folder holding initdb and pg_ctl."
    )


def _as_root() -> bool:
    return os.geteuid() == 0


def _server_command(*args: str) -> list[str]:
    """Run a server binary as the non-root server user when we are root."""
    command = [str(bin_dir() / args[0]), *args[1:]]
    if _as_root():
        return ["runuser", "-u", SERVER_OS_USER, "--", *command]
    return command


def _give_to_server_user(path: Path) -> None:
    if _as_root():
        entry = pwd.getpwnam(SERVER_OS_USER)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def _accepts_connections(port: int, timeout: float = 1.0) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=timeout):
            return True
    except OSError:
        return False


def _cluster_lock(root: Path) -> AbstractContextManager[None]:
    return file_lock(root / ".lock", what=f"the local PostgreSQL cluster in {root}")


def _write_facts(root: Path, facts: dict[str, object]) -> None:
    path = root / RECORD_FILE
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(facts, handle)
    os.replace(tmp, path)


def _running_postmaster_port(pgdata: Path) -> int | None:
    """The port of a live postmaster of this data folder, from `postmaster.pid`, else None."""
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid, port = int(lines[0]), int(lines[3])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass  # alive, owned by another user
    return port if _accepts_connections(port) else None


def _run(command: list[str], what: str) -> None:
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise LocalPostgresError(
            f"{what} failed (exit {result.returncode}): {result.stderr.strip() or result.stdout}"
        )


def _initdb(root: Path, pgdata: Path, password: str) -> None:
    pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
    _give_to_server_user(pgdata)
    # initdb reads the superuser password from a file the server user can read; removed after.
    pwfile = root / "log" / ".pwfile"
    fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(password + "\n")
    _give_to_server_user(pwfile)
    try:
        _run(
            _server_command(
                "initdb",
                "-D",
                str(pgdata),
                "-U",
                SUPERUSER,
                f"--pwfile={pwfile}",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                "--encoding=UTF8",
                "--no-locale",
                "--no-sync",
            ),
            f"initdb in {pgdata} (the server user {SERVER_OS_USER!r} must be able to reach it)",
        )
    finally:
        pwfile.unlink(missing_ok=True)
    with open(pgdata / "postgresql.conf", "a") as conf:
        conf.write("\n# data-pipelines local stack\n")
        for key, value in SERVER_SETTINGS.items():
            conf.write(f"{key} = {value}\n")


def _ensure_database(facts: LocalPostgres) -> None:
    import psycopg

    with psycopg.connect(facts.dsn_for("postgres"), autocommit=True) as conn:
        exists = conn.execute(
            "select 1 from pg_database where datname = %s", (facts.database,)
        ).fetchone()
        if not exists:
            conn.execute(f'create database "{facts.database}"')


def ensure_running(root: Path | None = None, database: str = DEFAULT_DATABASE) -> LocalPostgres:
    """Start the local cluster if it is not running (creating it on first use); return its facts.

    Idempotent: a running cluster is reused on its recorded port; a stopped one restarts on
    the recorded port when that is still free.
    """
    root = (root or default_root()).resolve()
    with _cluster_lock(root):
        os.chmod(root, 0o755)  # the server user must traverse it; cluster.json stays 0600
        log_dir = root / "log"
        log_dir.mkdir(exist_ok=True)
        _give_to_server_user(log_dir)
        pgdata = root / "pgdata"
        facts = read_record(root) or {
            "user": SUPERUSER,
            "password": secrets.token_urlsafe(18),
            "database": database,
            "port": None,
        }
        if not (pgdata / "PG_VERSION").exists():
            _initdb(root, pgdata, str(facts["password"]))

        port = _running_postmaster_port(pgdata)
        if port is None:
            recorded = facts.get("port")
            port = int(recorded) if recorded and port_is_free(int(recorded)) else free_port()
            _run(
                _server_command(
                    "pg_ctl",
                    "start",
                    "-D",
                    str(pgdata),
                    "-l",
                    str(log_dir / "postgres.log"),
                    "-o",
                    f"-p {port}",
                    "-w",
                    "-t",
                    str(START_TIMEOUT_SECONDS),
                ),
                f"starting PostgreSQL on {HOST}:{port} (see {log_dir / 'postgres.log'})",
            )
        facts["port"] = port
        _write_facts(root, facts)
        cluster = cluster_from_record(root, port, facts)
        _ensure_database(cluster)
        return cluster


def recorded(root: Path | None = None) -> LocalPostgres | None:
    """The facts recorded by the last start (running or not), else None; starts nothing."""
    return _recorded((root or default_root()).resolve())


def running(root: Path | None = None) -> LocalPostgres | None:
    """The local cluster's facts if it is running, else None; never starts anything."""
    root = (root or default_root()).resolve()
    facts = read_record(root)
    if facts is None:
        return None
    port = _running_postmaster_port(root / "pgdata")
    if port is None:
        return None
    return cluster_from_record(root, port, facts)


def stop(root: Path | None = None) -> bool:
    """Stop the local cluster (fast shutdown); True if one was running. Data stays on disk."""
    root = (root or default_root()).resolve()
    pgdata = root / "pgdata"
    if not (pgdata / "PG_VERSION").exists():
        return False
    with _cluster_lock(root):
        if _running_postmaster_port(pgdata) is None:
            return False
        _run(
            _server_command("pg_ctl", "stop", "-D", str(pgdata), "-m", "fast", "-w"),
            "stopping PostgreSQL",
        )
        return True


def wait_until_stopped(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while _accepts_connections(port, timeout=0.2) and time.monotonic() < deadline:
        time.sleep(0.1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m dev_stack.postgres",
        description="The local PostgreSQL cluster holding raw_data.products (data folder).",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("start", help="start (creating the cluster if needed)")
    commands.add_parser("stop", help="stop the cluster (data stays)")
    commands.add_parser("status", help="print whether it runs, and where")
    commands.add_parser("dsn", help="print the DSN (with password) of the running cluster")
    args = parser.parse_args(argv)

    if args.command == "start":
        cluster = ensure_running()
        print(f"PostgreSQL running on {cluster.host}:{cluster.port} ({cluster.redacted_dsn})")
        return 0
    if args.command == "stop":
        print("stopped" if stop() else "not running")
        return 0
    cluster = running()
    if args.command == "status":
        if cluster is None:
            print(f"not running ({default_root()})")
            return 1
        print(f"running on {cluster.host}:{cluster.port} ({cluster.redacted_dsn}), {cluster.root}")
        return 0
    if cluster is None:
        print("not running: python -m dev_stack.postgres start", file=sys.stderr)
        return 1
    print(cluster.dsn)
    return 0


if __name__ == "__main__":
    sys.exit(main())
