"""The public status page as pure functions: what each public component's state is (from probe results and the
open public incidents that name it), the uptime bar of day buckets, the overall state, and the page rendered as
JSON (`PageView`, a pydantic model: the JSON is its dump, its schema is the published one) and as one
self-contained HTML document (inline CSS, no script, no external asset, readable on a phone).

Only what the configuration declares public reaches a `PageView`: component names, the public title and public
texts of incidents made public, and states. Probe URLs, target names, internal titles and updates, people and
channels are never read into it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bot.status.config import PublicState, StatusPageSection

DayState = Literal["operational", "degraded_performance", "partial_outage", "major_outage", "no_data"]
RANK: dict[str, int] = {"operational": 0, "degraded_performance": 1, "partial_outage": 2, "major_outage": 3}
STATE_TEXT = {
    "operational": "Operational",
    "degraded_performance": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
    "no_data": "No data",
}
OVERALL_TEXT = {
    "operational": "All systems operational",
    "degraded_performance": "Degraded performance",
    "partial_outage": "Partial outage",
    "major_outage": "Major outage",
}
RECENT = timedelta(days=7)


@dataclass(frozen=True)
class PublicIncident:
    """What the page may know of an incident made public (handed over by the composition root)."""

    title: str
    severity: str
    status: str
    service: str
    declared_at: datetime
    resolved_at: datetime | None
    updates: tuple[tuple[datetime, str], ...]  # (when, public text), oldest first


@dataclass(frozen=True)
class DayCount:
    """Good and total probes of one UTC day, summed over a component's targets."""

    day: date
    good: int
    total: int


class DayView(BaseModel):
    """One day of a component's uptime bar."""

    model_config = ConfigDict(frozen=True)

    date: date
    uptime: float | None  # percent, None without probes that day
    state: DayState


class ComponentView(BaseModel):
    """A public component: its state now and its uptime bar, oldest day first."""

    model_config = ConfigDict(frozen=True)

    name: str
    state: PublicState
    state_text: str
    uptime: float | None  # percent over the bar's days
    days: list[DayView]


class UpdateView(BaseModel):
    """One public update of an incident."""

    model_config = ConfigDict(frozen=True)

    at: datetime
    text: str


PublicIncidentStatus = Literal["investigating", "identified", "monitoring", "resolved"]
# The incident statuses the public page shows as they are; any other shows as resolved.
_PUBLIC_STATUS: dict[str, PublicIncidentStatus] = {
    "investigating": "investigating",
    "identified": "identified",
    "monitoring": "monitoring",
}


class IncidentView(BaseModel):
    """An incident as the public sees it."""

    model_config = ConfigDict(frozen=True)

    title: str
    status: PublicIncidentStatus
    impact: PublicState
    components: list[str]
    started_at: datetime
    resolved_at: datetime | None
    updates: list[UpdateView]  # newest first


class PageView(BaseModel):
    """The whole public page: `GET /status-page.json`."""

    model_config = ConfigDict(frozen=True)

    title: str
    generated_at: datetime
    state: PublicState
    state_text: str
    components: list[ComponentView]
    incidents: list[IncidentView]  # open ones
    recent_incidents: list[IncidentView]  # resolved within 7 days


def day_state(good: int, total: int) -> DayState:
    """A day's colour: no data, operational (≥ 99.9%), degraded (≥ 99%), partial (≥ 95%) or major outage."""
    if total == 0:
        return "no_data"
    share = good / total
    if share >= 0.999:
        return "operational"
    if share >= 0.99:
        return "degraded_performance"
    if share >= 0.95:
        return "partial_outage"
    return "major_outage"


def probe_state(states: Sequence[str]) -> PublicState:
    """From the latest probe states (up, slow, down, timeout) of a component's targets: all failing is a major
    outage, some failing a partial one, slow is degraded performance."""
    failing = sum(state in ("down", "timeout") for state in states)
    if states and failing == len(states):
        return "major_outage"
    if failing:
        return "partial_outage"
    if "slow" in states:
        return "degraded_performance"
    return "operational"


def worst(*states: PublicState) -> PublicState:
    """The worst of some states (operational without any)."""
    return max(states, key=lambda state: RANK[state], default="operational")


def uptime_bar(counts: Mapping[date, DayCount], today: date, days: int) -> list[DayView]:
    """`days` day views ending today, oldest first."""
    bar = []
    for back in range(days - 1, -1, -1):
        day = today - timedelta(days=back)
        found = counts.get(day)
        good, total = (found.good, found.total) if found else (0, 0)
        uptime = round(100 * good / total, 3) if total else None
        bar.append(DayView(date=day, uptime=uptime, state=day_state(good, total)))
    return bar


def build_page(
    config: StatusPageSection,
    *,
    now: datetime,
    probe_states: Mapping[str, Sequence[str]],
    services: Mapping[str, frozenset[str]],
    days: Mapping[str, Mapping[date, DayCount]],
    incidents: Sequence[PublicIncident],
) -> PageView:
    """The page: `probe_states`, `services` and `days` are by component name (fresh probe states of its targets,
    the services its targets belong to, its day counts); `incidents` are the public ones, open or recent."""
    open_incidents = [i for i in incidents if i.resolved_at is None]
    components = []
    for component in config.components:
        names = services.get(component.name, frozenset())
        from_incidents = [
            config.incident_states.get(i.severity, "major_outage") for i in open_incidents if i.service in names
        ]
        state = worst(probe_state(list(probe_states.get(component.name, ()))), *from_incidents)
        counts = days.get(component.name, {})
        bar = uptime_bar(counts, now.date(), config.history_days)
        good = sum(c.good for c in counts.values() if c.day >= bar[0].date)
        total = sum(c.total for c in counts.values() if c.day >= bar[0].date)
        components.append(
            ComponentView(
                name=component.name,
                state=state,
                state_text=STATE_TEXT[state],
                uptime=round(100 * good / total, 3) if total else None,
                days=bar,
            )
        )
    overall = worst(*(c.state for c in components))

    def view(incident: PublicIncident) -> IncidentView:
        affected = [c.name for c in config.components if incident.service in services.get(c.name, frozenset())]
        updates = [UpdateView(at=at, text=text) for at, text in reversed(incident.updates)]
        if incident.resolved_at is not None:
            updates.insert(0, UpdateView(at=incident.resolved_at, text="This incident has been resolved."))
        return IncidentView(
            title=incident.title,
            status=_PUBLIC_STATUS.get(incident.status, "resolved"),
            impact=config.incident_states.get(incident.severity, "major_outage"),
            components=affected,
            started_at=incident.declared_at,
            resolved_at=incident.resolved_at,
            updates=updates,
        )

    recent = [i for i in incidents if i.resolved_at is not None and i.resolved_at >= now - RECENT]
    return PageView(
        title=config.title,
        generated_at=now,
        state=overall,
        state_text=OVERALL_TEXT[overall],
        components=components,
        incidents=[view(i) for i in sorted(open_incidents, key=lambda i: i.declared_at, reverse=True)],
        recent_incidents=[view(i) for i in sorted(recent, key=lambda i: i.resolved_at or now, reverse=True)],
    )


# -- HTML ------------------------------------------------------------------------------------------------------

COLOURS = {
    "operational": "#2e7d32",
    "degraded_performance": "#f9a825",
    "partial_outage": "#ef6c00",
    "major_outage": "#c62828",
    "no_data": "#c9ced6",
}
_CSS = """
*{box-sizing:border-box}body{margin:0;font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
color:#1f2328;background:#f6f8fa}main{max-width:860px;margin:0 auto;padding:16px}h1{font-size:1.6rem;margin:8px 0 16px}
.banner{border-radius:8px;color:#fff;padding:14px 18px;font-size:1.2rem;font-weight:600;margin-bottom:20px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:14px 16px;margin-bottom:14px}
.row{display:flex;justify-content:space-between;align-items:baseline;gap:8px;flex-wrap:wrap}
.name{font-weight:600}.state{font-weight:600}
.bar{display:flex;gap:1px;height:34px;margin:10px 0 4px}.bar span{flex:1;border-radius:2px;min-width:1px}
.legend{display:flex;justify-content:space-between;color:#57606a;font-size:.8rem}
h2{font-size:1.2rem;margin:24px 0 10px}.incident h3{margin:0 0 4px;font-size:1.05rem}
.meta{color:#57606a;font-size:.85rem}.update{margin:8px 0 0;padding-left:10px;border-left:3px solid #d0d7de}
.update p{margin:2px 0;white-space:pre-wrap;overflow-wrap:anywhere}footer{color:#57606a;font-size:.8rem;margin:24px 0}
"""


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _when(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%b %d, %H:%M UTC")


def _incident_html(incident: IncidentView) -> str:
    updates = "".join(
        f'<div class="update"><div class="meta">{_e(_when(u.at))}</div><p>{_e(u.text)}</p></div>'
        for u in incident.updates
    )
    affected = f" · affects {_e(', '.join(incident.components))}" if incident.components else ""
    colour = COLOURS["operational" if incident.status == "resolved" else incident.impact]
    return (
        f'<article class="card incident" style="border-left:6px solid {colour}"><h3>{_e(incident.title)}</h3>'
        f'<div class="meta">{_e(incident.status.capitalize())} · started {_e(_when(incident.started_at))}'
        f"{affected}</div>"
        f"{updates}</article>"
    )


def render_html(page: PageView) -> str:
    """The page as one self-contained HTML document."""
    parts = [f'<div class="banner" style="background:{COLOURS[page.state]}" role="status">{_e(page.state_text)}</div>']
    if page.incidents:
        parts.append("<h2>Current incidents</h2>" + "".join(_incident_html(i) for i in page.incidents))
    parts.append("<h2>Components</h2>")
    for component in page.components:
        cells = "".join(
            f'<span style="background:{COLOURS[d.state]}" title="{_e(d.date.isoformat())}: '
            f'{_e("no data" if d.uptime is None else f"{d.uptime:.2f}%")}"></span>'
            for d in component.days
        )
        uptime = "no data yet" if component.uptime is None else f"{component.uptime:.2f}% uptime"
        parts.append(
            f'<section class="card"><div class="row"><span class="name">{_e(component.name)}</span>'
            f'<span class="state" style="color:{COLOURS[component.state]}">{_e(component.state_text)}</span></div>'
            f'<div class="bar" aria-label="uptime per day">{cells}</div>'
            f'<div class="legend"><span>{len(component.days)} days ago</span><span>{_e(uptime)}</span>'
            "<span>Today</span></div>"
            "</section>"
        )
    parts.append("<h2>Past 7 days</h2>")
    recent = "".join(_incident_html(i) for i in page.recent_incidents)
    parts.append(recent or '<p class="meta">No incidents reported.</p>')
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        f"<title>{_e(page.title)}</title><style>{_CSS}</style></head><body><main>"
        f"<h1>{_e(page.title)}</h1>{''.join(parts)}"
        f'<footer>Updated {_e(_when(page.generated_at))} · <a href="status-page.json">JSON</a></footer>'
        "</main></body></html>"
    )


def status_lines(page: PageView) -> list[str]:
    """One `Name: State` line per public component (what /status shows of the public page), as plain text."""
    return [f"{component.name}: {component.state_text}" for component in page.components]
