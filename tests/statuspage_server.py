"""A local stand-in for Atlassian Statuspage's REST API (https://developer.statuspage.io), enough for chatops:
create an incident, update it, read it, list the unresolved ones, list components.

Shapes follow the vendor's reference: requests carry `Authorization: OAuth <key>` (else 401 `{"error": "Could not
authenticate"}`); `POST /v1/pages/{page_id}/incidents` takes `{"incident": {"name", "status", "body",
"component_ids", "components": {id: status}, "metadata"}}` and answers 201 with the incident, whose
`incident_updates` list is newest first and whose updates name `affected_components` (`code`, `old_status`,
`new_status`); `PATCH /v1/pages/{page_id}/incidents/{id}` answers 200; unknown ids 404 `{"error": "Not found"}`; a
missing name or a bad status 422 `{"error": [...]}`. Faults for tests: `fail_next(n, status)` answers the next n
calls with that status (and Retry-After on 429) without doing anything; `lose_answers(n)` does the next n writes
but answers 500, as a proxy that lost the answer would.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

INCIDENT_STATUSES = {
    "investigating",
    "identified",
    "monitoring",
    "resolved",
    "scheduled",
    "in_progress",
    "verifying",
    "completed",
}
COMPONENT_STATUSES = {"operational", "degraded_performance", "partial_outage", "major_outage", "under_maintenance"}


def _id() -> str:
    return secrets.token_hex(6)


@dataclass
class StatuspageServer:
    """The fake's state: one page, its components, its incidents, the requests seen and faults to inject."""

    page_id: str
    api_key: str
    components: dict[str, dict[str, Any]] = field(default_factory=dict)
    incidents: dict[str, dict[str, Any]] = field(default_factory=dict)
    requests: list[tuple[str, str, dict[str, Any] | None]] = field(default_factory=list)
    failures: list[int] = field(default_factory=list)
    lost: int = 0

    def add_component(self, component_id: str, name: str) -> None:
        """A component of the page, operational."""
        self.components[component_id] = {
            "id": component_id,
            "page_id": self.page_id,
            "name": name,
            "status": "operational",
        }

    def fail_next(self, count: int, status: int = 503) -> None:
        """The next `count` requests get `status` and change nothing."""
        self.failures += [status] * count

    def lose_answers(self, count: int) -> None:
        """The next `count` writes happen but are answered 500."""
        self.lost += count

    def app(self) -> web.Application:
        """The aiohttp app, under /v1."""
        app = web.Application(middlewares=[self._middleware])
        base = "/v1/pages/{page_id}"
        app.router.add_post(f"{base}/incidents", self._create)
        app.router.add_get(f"{base}/incidents/unresolved", self._unresolved)
        app.router.add_get(f"{base}/incidents/{{incident_id}}", self._get)
        app.router.add_patch(f"{base}/incidents/{{incident_id}}", self._patch)
        app.router.add_get(f"{base}/components", self._components)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append((request.method, request.path, body))
        if request.headers.get("Authorization") != f"OAuth {self.api_key}":
            return web.json_response({"error": "Could not authenticate"}, status=401)
        if request.match_info.get("page_id") != self.page_id:
            return web.json_response({"error": "Not found"}, status=404)
        if self.failures:
            status = self.failures.pop(0)
            headers = {"Retry-After": "1"} if status == 429 else {}
            return web.json_response({"error": "Service unavailable"}, status=status, headers=headers)
        response = await handler(request)
        if self.lost and request.method in ("POST", "PATCH") and response.status < 300:
            self.lost -= 1
            return web.Response(status=500, text="<html>Internal Server Error</html>")
        return response

    def _apply(self, incident: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any] | web.Response:
        status = fields.get("status", incident.get("status"))
        if status not in INCIDENT_STATUSES:
            return web.json_response({"error": ["Status is not included in the list"]}, status=422)
        changes = fields.get("components") or {}
        unknown = [c for c in changes if c not in self.components]
        if unknown or any(s not in COMPONENT_STATUSES for s in changes.values()):
            return web.json_response({"error": ["Components are invalid"]}, status=422)
        now = datetime.now(UTC).isoformat()
        affected = []
        for component_id, new in changes.items():
            affected.append(
                {
                    "code": component_id,
                    "name": self.components[component_id]["name"],
                    "old_status": self.components[component_id]["status"],
                    "new_status": new,
                }
            )
            self.components[component_id]["status"] = new
        incident["status"] = status
        incident["updated_at"] = now
        if status == "resolved":
            incident["resolved_at"] = now
        if fields.get("component_ids"):
            known = {c["id"] for c in incident["components"]}
            incident["components"] += [dict(self.components[c]) for c in fields["component_ids"] if c not in known]
        update = {
            "id": _id(),
            "incident_id": incident["id"],
            "status": status,
            "body": fields.get("body") or "",
            "created_at": now,
            "display_at": now,
            "affected_components": affected or None,
            "deliver_notifications": bool(fields.get("deliver_notifications", True)),
        }
        incident["incident_updates"].insert(0, update)
        return incident

    async def _create(self, request: web.Request) -> web.Response:
        fields = (await request.json() or {}).get("incident") or {}
        if not fields.get("name"):
            return web.json_response({"error": ["Name can't be blank"]}, status=422)
        now = datetime.now(UTC).isoformat()
        incident = {
            "id": _id(),
            "page_id": self.page_id,
            "name": fields["name"],
            "status": "investigating",
            "created_at": now,
            "updated_at": now,
            "resolved_at": None,
            "impact": "none",
            "components": [],
            "incident_updates": [],
            "metadata": fields.get("metadata") or {},
            "shortlink": "http://stspg.io/x",
        }
        applied = self._apply(incident, {"status": "investigating", **fields})
        if isinstance(applied, web.Response):
            return applied
        self.incidents[incident["id"]] = incident
        return web.json_response(incident, status=201)

    async def _patch(self, request: web.Request) -> web.Response:
        incident = self.incidents.get(request.match_info["incident_id"])
        if incident is None:
            return web.json_response({"error": "Not found"}, status=404)
        applied = self._apply(incident, (await request.json() or {}).get("incident") or {})
        return applied if isinstance(applied, web.Response) else web.json_response(applied)

    async def _get(self, request: web.Request) -> web.Response:
        incident = self.incidents.get(request.match_info["incident_id"])
        if incident is None:
            return web.json_response({"error": "Not found"}, status=404)
        return web.json_response(incident)

    async def _unresolved(self, request: web.Request) -> web.Response:
        return web.json_response([i for i in self.incidents.values() if i["status"] not in ("resolved", "completed")])

    async def _components(self, request: web.Request) -> web.Response:
        return web.json_response(list(self.components.values()))
