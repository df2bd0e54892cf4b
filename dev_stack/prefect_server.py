"""A throwaway `prefect server start` on loopback: a real server, background services included.

Prefect's test harness runs an ephemeral server without the lease repossessor, so a slot held
by a killed process is never freed there; production's server frees it once the lease runs
out. Tests and benchmarks of crash recovery use this instead. `restartable_prefect_server`
can also restart it on the same database and port, as an operator restarts a self-hosted
server (an upgrade, a redeploy, a crash).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dev_stack.processes import free_port, http_ok, port_is_free, stop_group, wait_until


class PrefectServerProcess:
    """One `prefect server start` on `port` with its database under `home`."""

    def __init__(self, home: Path, port: int, settings: Mapping[str, str] | None = None) -> None:
        self.home, self.port = home, port
        self.api_url = f"http://127.0.0.1:{port}/api"
        self.log = home / "server.log"
        self.env = {
            **os.environ,
            "PREFECT_HOME": str(home),
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            **(settings or {}),
        }
        self.env.pop("PREFECT_API_URL", None)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240) -> None:
        with open(self.log, "a") as out:
            self.process = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("prefect")),
                    *("server", "start", "--host", "127.0.0.1", "--port", str(self.port)),
                    "--no-ui",
                ],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        wait_until(lambda: http_ok(f"{self.api_url}/health"), "prefect server", timeout, self.log)

    def stop(self) -> None:
        if self.process is not None:
            stop_group(self.process)
            self.process = None

    def restart(self, timeout: float = 240) -> float:
        """Stop, then start again on the same database and port; seconds it was away."""
        began = time.monotonic()
        self.stop()
        deadline = time.monotonic() + 30
        while not port_is_free(self.port) and time.monotonic() < deadline:
            time.sleep(0.2)
        self.start(timeout)
        return time.monotonic() - began


@contextmanager
def restartable_prefect_server(
    settings: Mapping[str, str] | None = None,
) -> Iterator[PrefectServerProcess]:
    """`prefect server start` on a free loopback port and a new database, restartable."""
    with tempfile.TemporaryDirectory(prefix="prefect-server-") as home:
        server = PrefectServerProcess(Path(home), free_port(), settings)
        try:
            server.start()
            yield server
        finally:
            server.stop()


@contextmanager
def throwaway_prefect_server(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """`prefect server start` on a free loopback port and a new database; yields its API URL.

    `settings`: extra `PREFECT_SERVER_*` variables for the server (e.g. the stack's).
    """
    with restartable_prefect_server(settings) as server:
        yield server.api_url
