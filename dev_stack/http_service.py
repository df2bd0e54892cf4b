"""One way to serve HTTP on loopback for the local stack (the OXR sandbox, the webhook receiver).

A threaded server bound to 127.0.0.1 only, serving from a daemon thread; a context manager for
tests, and `run_until_signalled()` for the `python -m ...` services the stack starts.
"""

from __future__ import annotations

import signal
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

HOST = "127.0.0.1"


class LoopbackHTTPServer(ThreadingHTTPServer):
    """The server object handlers see; `service` is the `LoopbackHTTPService` that owns it."""

    daemon_threads = True
    allow_reuse_address = True
    service: Any


class LoopbackHTTPService:
    """Serves `handler` on 127.0.0.1:`port` (0: any free port) from a daemon thread."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], port: int = 0, name: str = ""
    ) -> None:
        self._handler = handler
        self._requested_port = port
        self._name = name or type(self).__name__
        self._server: LoopbackHTTPServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Self:
        """Bind and serve; idempotent. Returns self (`with Service().start()` reads well)."""
        if self._server is not None:
            return self
        self._server = LoopbackHTTPServer((HOST, self._requested_port), self._handler)
        self._server.service = self
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{self._name}-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; idempotent."""
        if self._server is None:
            return
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._server = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (useful with port=0)."""
        if self._server is None:
            raise RuntimeError(f"{self._name} is not started")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def run_until_signalled(self, ready_message: str = "") -> None:
        """Serve in the foreground until SIGTERM or SIGINT (the stack stops services so)."""
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        self.start()
        try:
            if ready_message:
                print(ready_message.format(service=self), flush=True)
            while not stop.wait(0.5):
                pass
        finally:
            self.stop()
