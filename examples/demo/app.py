"""The demo service `chatops dev` deploys: a tiny HTTP server that reports its version and environment.

    python examples/demo/app.py --port 8081 --version v2 --env staging

`GET /healthz` answers 200 `{"status": "ok", "version": "v2"}`, except for version `bad` (or `bad-…`), which
answers 500 `{"status": "failing", ...}` so a deploy's health gate has something to catch. `GET /` is a small
page with the version and environment. Standard library only, so it starts in tens of milliseconds; SIGTERM (or
Ctrl-C) stops it cleanly with exit status 0.
"""

from __future__ import annotations

import argparse
import html
import json
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType


def is_failing(version: str) -> bool:
    """Whether this version plays a release whose health check fails: `bad` or `bad-…`."""
    return version == "bad" or version.startswith("bad-")


class DemoServer(ThreadingHTTPServer):
    """The HTTP server, carrying what the handler shows."""

    daemon_threads = True
    allow_reuse_address = True  # a restart on the same port must not wait for TIME_WAIT

    def __init__(self, port: int, *, host: str, version: str, environment: str) -> None:
        super().__init__((host, port), DemoHandler)
        self.version = version
        self.environment = environment
        self.started = time.time()


class DemoHandler(BaseHTTPRequestHandler):
    """`/healthz` and `/`; anything else is a 404."""

    server: DemoServer
    server_version = "chatops-demo"

    def do_GET(self) -> None:
        """Answers the health check and the home page."""
        path = self.path.split("?", 1)[0]
        version, environment = self.server.version, self.server.environment
        if path == "/healthz":
            failing = is_failing(version)
            body = {"status": "failing" if failing else "ok", "version": version}
            self._send(500 if failing else 200, json.dumps(body).encode(), "application/json")
        elif path == "/":
            uptime = round(time.time() - self.server.started)
            page = (
                "<!doctype html><html><head><meta charset='utf-8'><title>chatops demo</title></head>"
                f"<body><h1>demo {html.escape(version)}</h1>"
                f"<p>environment: <b>{html.escape(environment)}</b></p>"
                f"<p>version: <b>{html.escape(version)}</b></p><p>up for {uptime}s</p></body></html>\n"
            )
            self._send(200, page.encode(), "text/html; charset=utf-8")
        else:
            self._send(404, b'{"error": "not found"}', "application/json")

    def do_HEAD(self) -> None:
        """Like GET, for probes that only want the status."""
        self.do_GET()

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """One line per request on stderr (the log file deploy.py gives us)."""
        sys.stderr.write(f"{self.log_date_time_string()} {self.address_string()} {format % args}\n")
        sys.stderr.flush()


def main(argv: list[str] | None = None) -> int:
    """Serves until SIGTERM or SIGINT; 0 on a clean stop, 1 when the port cannot be bound."""
    parser = argparse.ArgumentParser(description="The chatops demo service.")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--version", required=True)
    parser.add_argument("--env", required=True, dest="environment")
    parser.add_argument("--host", default="127.0.0.1")
    args = parser.parse_args(argv)
    try:
        server = DemoServer(args.port, host=args.host, version=args.version, environment=args.environment)
    except OSError as error:
        print(
            f"demo {args.version}: cannot listen on {args.host}:{args.port}: {error.strerror or error}",
            file=sys.stderr,
            flush=True,
        )
        return 1

    def stop(signum: int, frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run outside the thread that is serving.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"demo {args.version} ({args.environment}) listening on {args.host}:{args.port}", file=sys.stderr, flush=True)
    try:
        server.serve_forever(poll_interval=0.05)
    finally:
        server.server_close()
    print(f"demo {args.version} ({args.environment}) stopped", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
