"""The public status page's routes: `GET /status-page` (HTML) and `GET /status-page.json`, served from the page's
cache (see `public.py`), with an ETag and a short `Cache-Control` so browsers and proxies share the load."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from bot.status.public import PublicStatus, Rendered


def status_page_routes(app: web.Application, public: Callable[[], PublicStatus | None]) -> None:
    """Adds both routes; they answer 404 when `status_page:` is not configured."""

    async def answer(request: web.Request, kind: str) -> web.Response:
        service = public()
        if service is None:
            raise web.HTTPNotFound(text="No public status page is configured (status_page: in chatops.yaml).")
        rendered: Rendered = await service.rendered()
        etag = f'"{rendered.etag}"'
        headers = {
            "Cache-Control": f"public, max-age={int(service.section.cache.total_seconds())}",
            "ETag": etag,
            "X-Content-Type-Options": "nosniff",
        }
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers=headers)
        if kind == "json":
            return web.Response(body=rendered.json, content_type="application/json", headers=headers)
        headers["Content-Security-Policy"] = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
        return web.Response(body=rendered.html, content_type="text/html", charset="utf-8", headers=headers)

    async def page(request: web.Request) -> web.Response:
        """The public status page."""
        return await answer(request, "html")

    async def page_json(request: web.Request) -> web.Response:
        """The public status page's data."""
        return await answer(request, "json")

    app.router.add_get("/status-page", page)
    app.router.add_get("/status-page.json", page_json)
