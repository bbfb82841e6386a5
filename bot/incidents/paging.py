"""Incident pages go through the alert and escalation machinery, so acknowledging, the DMs with Acknowledge, the
ack record and escalation work exactly as for alerts.

Each page is one `AlertGroup` (source `chatops`, posted in the incident channel) walking an escalation policy:
- `page:` names an escalation policy: that policy, as configured.
- `page:` names a rotation: a policy synthesized here, `incident-<sev>`: the rotation at once, then the
  announce channel with @here when `respond_within` passes unacknowledged, and one more round after that.
The synthesized policies are added to the on-call section the alert pipeline and the pager read (see
`with_incident_policies`), so the pager needs no incident-specific code.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from bot.alerts.model import CHATOPS_SOURCE, AlertGroup, Member, is_chatops_page, new_group_id
from bot.alerts.policies import EscalationSettings
from bot.incidents.config import IncidentsSection
from bot.incidents.model import Incident
from bot.oncall.config import EscalationPolicy, EscalationStep, OncallSection
from integrations.alerts.model import Severity

SOURCE = CHATOPS_SOURCE
SEVERITY_TO_ALERT: tuple[Severity, ...] = ("critical", "warning", "info")


def policy_name(config: IncidentsSection, oncall: EscalationSettings, severity: str) -> str | None:
    """The escalation policy that pages for `severity` (None when it pages nobody)."""
    target = config.severities[severity].page
    if target is None:
        return None
    if isinstance(target, str) and target in oncall.escalation_policies:
        return target
    return f"incident-{severity}"


def synthesized_policies(config: IncidentsSection, oncall: OncallSection) -> dict[str, EscalationPolicy]:
    """The policies for severities whose `page:` names a rotation."""
    policies = {}
    for severity, spec in config.severities.items():
        if spec.page is None or spec.page in oncall.escalation_policies:
            continue
        policies[f"incident-{severity}"] = EscalationPolicy(
            steps=(
                EscalationStep(notify=spec.page, after=timedelta(0)),
                EscalationStep(notify=config.announce_channel, after=spec.respond_within, mention="@here"),
            ),
            repeat=1,
            repeat_after=spec.respond_within,
        )
    return policies


def with_incident_policies(config: IncidentsSection, oncall: OncallSection) -> OncallSection:
    """The on-call section with the synthesized incident policies added (configured names win)."""
    extra = synthesized_policies(config, oncall)
    if not extra:
        return oncall
    return oncall.model_copy(update={"escalation_policies": {**extra, **oncall.escalation_policies}})


def alert_severity(config: IncidentsSection, severity: str) -> Severity:
    """The alert severity an incident page shows: the most severe incident severity is critical."""
    return SEVERITY_TO_ALERT[min(config.rank(severity), len(SEVERITY_TO_ALERT) - 1)]


def incident_severity(config: IncidentsSection, alert_severity_name: str) -> str:
    """The incident severity to pre-fill for an alert of this severity (critical -> the first listed…)."""
    names = list(config.severities)
    rank = SEVERITY_TO_ALERT.index(alert_severity_name) if alert_severity_name in SEVERITY_TO_ALERT else len(names) - 1
    return names[min(rank, len(names) - 1)]


def page_group(
    config: IncidentsSection, incident: Incident, *, channel: str, policy: str, reason: str, now: datetime
) -> AlertGroup:
    """A new alert group that pages for `incident` (not started yet: `escalation.start` does that)."""
    number = len(incident.page_ids) + 1
    fingerprint = f"{SOURCE}-{incident.id}-{number}"
    member = Member(
        fingerprint=fingerprint,
        title=f"{incident.id} {incident.severity.upper()}: {incident.title}",
        severity=alert_severity(config, incident.severity),
        status="firing",
        summary=reason,
        labels={
            "source": SOURCE,
            "incident": incident.id,
            "severity": incident.severity,
            **({"service": incident.service} if incident.service else {}),
        },
        starts_at=now,
        last_seen=now,
    )
    return AlertGroup(
        id=new_group_id(),
        group_key=f"{SOURCE}:{incident.id}:{number}",
        channel=channel,
        escalation=policy,
        members={fingerprint: member},
        created_at=now,
        updated_at=now,
    )


def is_incident_page(group: AlertGroup) -> bool:
    """Whether an alert group is an incident's page (its message needs no Declare incident button)."""
    return is_chatops_page(group)
