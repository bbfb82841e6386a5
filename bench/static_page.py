"""The status page bench's baseline: a bare aiohttp app whose one handler returns a static HTML page of the same
size as chatops's status page. Run: python bench/static_page.py PORT SIZE"""

from __future__ import annotations

import sys

from aiohttp import web


def main() -> None:
    port, size = int(sys.argv[1]), int(sys.argv[2])
    body = b"<!doctype html><html><body>" + b"x" * max(size - 40, 0) + b"</body></html>"

    async def page(_: web.Request) -> web.Response:
        return web.Response(body=body, content_type="text/html")

    app = web.Application()
    app.router.add_get("/status-page", page)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


if __name__ == "__main__":
    main()
