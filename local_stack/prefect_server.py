"""A throwaway `prefect server start` on loopback: a real server, background services included.

Prefect's test harness runs an ephemeral server without the lease repossessor, so a slot held
by a killed process is never freed there; production's server frees it once the lease runs
out. Tests and benchmarks of crash recovery use this instead.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from local_stack.processes import free_port, http_ok, stop_group, wait_until


@contextmanager
def throwaway_prefect_server(settings: Mapping[str, str] | None = None) -> Iterator[str]:
    """`prefect server start` on a free loopback port and a new database; yields its API URL.

    `settings`: extra `PREFECT_SERVER_*` variables for the server (e.g. the stack's).
    """
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="prefect-server-") as home:
        env = {
            **os.environ,
            "PREFECT_HOME": home,
            "PREFECT_UI_ENABLED": "false",
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            **(settings or {}),
        }
        env.pop("PREFECT_API_URL", None)
        log = Path(home) / "server.log"
        with open(log, "w") as out:
            server = subprocess.Popen(
                [
                    str(Path(sys.executable).with_name("prefect")),
                    *("server", "start", "--host", "127.0.0.1", "--port", str(port), "--no-ui"),
                ],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        api_url = f"http://127.0.0.1:{port}/api"
        try:
            wait_until(lambda: http_ok(f"{api_url}/health"), "prefect server", 240, log)
            yield api_url
        finally:
            stop_group(server)
