"""Incidents' pure logic without any network: channel names, the postmortem Markdown, the synthesized escalation
policies, rendering and the configuration's cross-checks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.alerts.model import AlertGroup, Member
from bot.deploys.model import DeployRecord, DeployState
from bot.incidents import naming, paging
from bot.incidents.config import IncidentsSection
from bot.incidents.model import Incident, SeverityChange, TimelineEntry
from bot.incidents.postmortem import postmortem_markdown
from bot.incidents.render import declare_modal, topic, user_text
from bot.oncall.config import OncallSection
from bot.shell.config import ConfigError, parse_config

T0 = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)
ROTATION = {"members": ["U0ALICE"], "shift": "1w", "handoff": "monday 09:00", "timezone": "UTC", "start": "2026-01-05"}


# -- names ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("title", "slug"),
    [
        ("Checkout errors on Web!", "checkout-errors-on-web"),
        ("  Zahlungen schlagen fehl – Überweisung  ", "zahlungen-schlagen-fehl-uberweisung"),
        ("DB: p99 > 2s (eu-west-1)", "db-p99-2s-eu-west-1"),
        ("🔥🔥🔥", "incident"),
        ("a" * 100, "a" * 40),
        ("the quick brown fox jumps over the lazy dog again and again", "the-quick-brown-fox-jumps-over-the-lazy"),
    ],
)
def test_slugify(title: str, slug: str) -> None:
    assert naming.slugify(title) == slug


def test_channel_names_and_the_suffix_on_collision() -> None:
    base = naming.channel_name("inc", T0, "Checkout errors on web")
    assert base == "inc-20261123-checkout-errors-on-web"
    assert [naming.candidate(base, n) for n in range(3)] == [base, f"{base}-2", f"{base}-3"]


@given(st.text(max_size=300), st.sampled_from(["inc", "incident", "x", "a" * 20]))
def test_channel_names_are_always_valid_slack_names(title: str, prefix: str) -> None:
    name = naming.candidate(naming.channel_name(prefix, T0, title), 19)
    assert len(name) <= naming.MAX_CHANNEL_NAME
    assert all(c.islower() or c.isdigit() or c in "-_" for c in name) and name.isascii()
    assert "--" not in name.removeprefix(f"{prefix}-")


# -- the postmortem -------------------------------------------------------------------------------------------


def _incident(**changes: object) -> Incident:
    base = Incident(
        id="INC-3",
        number=3,
        title="Checkout | errors",
        severity="sev1",
        status="resolved",
        service="web",
        declared_by="U0DEMO",
        declared_at=T0,
        commander="U0ALICE",
        commander_at=T0 + timedelta(minutes=4),
        roles={"scribe": "U0BOB"},
        resolved_at=T0 + timedelta(hours=1),
        resolved_by="U0ALICE",
        resolution="Rolled back",
        severity_history=(
            SeverityChange(at=T0, severity="sev2", by="U0DEMO"),
            SeverityChange(at=T0 + timedelta(minutes=10), severity="sev1", by="U0ALICE"),
        ),
    )
    return base.model_copy(update=changes)


def test_postmortem_markdown_has_every_section_in_order() -> None:
    entries = [
        TimelineEntry(id="1-0", at=T0, kind="declared", by="U0DEMO", text="Declared SEV2: Checkout | errors"),
        TimelineEntry(
            id="2-0",
            at=T0 + timedelta(minutes=5),
            kind="note",
            by="U0BOB",
            author="U0ALICE",
            text="502s from <@U0ALICE> &amp; lb-3",
        ),
        TimelineEntry(id="3-0", at=T0 + timedelta(hours=1), kind="resolved", by="U0ALICE", text="Resolved after 1h"),
    ]
    group = AlertGroup(
        id="a-pagepage",
        group_key="chatops:INC-3:1",
        channel="C1",
        created_at=T0,
        updated_at=T0,
        acked_by="U0ALICE",
        members={
            "f": Member(
                fingerprint="f",
                title="INC-3 SEV1: Checkout",
                severity="critical",
                status="resolved",
                starts_at=T0,
                last_seen=T0,
            )
        },
    )
    acks = [{"group": "a-pagepage", "user": "U0ALICE", "seconds_to_ack": "120", "via": "dm"}]
    deploy = DeployRecord(
        id="d-1",
        kind="rollback",
        service="web",
        environment="production",
        version="v1.4.1",
        previous_version="v1.5.0",
        requested_by="U0BOB",
        state=DeployState.SUCCEEDED,
        created_at=T0 + timedelta(minutes=20),
        updated_at=T0 + timedelta(minutes=21),
    )
    names = {"U0DEMO": "demo", "U0ALICE": "alice", "U0BOB": "bob"}
    text = postmortem_markdown(
        _incident(),
        entries,
        alerts=[group],
        acks=acks,
        deploys=[deploy],
        now=T0 + timedelta(hours=2),
        names=names,
        since=T0 - timedelta(minutes=3),
    )
    headings = [line for line in text.splitlines() if line.startswith("## ")]
    assert headings == [
        "## Summary",
        "## Impact window",
        "## Severity history",
        "## Timeline",
        "## Alerts and pages",
        "## Deploys and rollbacks in the window",
        "## What went well",
        "## What went wrong",
        "## Action items",
    ]
    assert "- **Commander:** @alice (after 4m)" in text and "- **Scribe:** @bob" in text
    assert "From 2026-11-23 09:57:00 UTC to 2026-11-23 11:00:00 UTC (1h 3m, resolved)." in text
    assert "| 2026-11-23 10:10:00 UTC | SEV1 | @alice |" in text
    assert "| 2026-11-23 10:05:00 | @bob (message by @alice) | note: 502s from @alice & lb-3 |" in text
    assert "Checkout \\| errors" in text  # a | in people's text does not break the table
    assert (
        "| `a-pagepage` | INC-3 SEV1: Checkout | critical | 2026-11-23 10:00:00 UTC | @alice after 2m via dm |" in text
    )
    assert "| rollback | web | production | v1.4.1 | v1.5.0 | succeeded | @bob |" in text


def test_postmortem_of_an_open_incident_without_alerts_or_deploys() -> None:
    text = postmortem_markdown(
        _incident(status="investigating", resolved_at=None, resolution="", commander=None, commander_at=None, roles={}),
        [],
        alerts=[],
        acks=[],
        deploys=[],
        now=T0 + timedelta(minutes=30),
    )
    assert "still open" in text and "No alerts were linked." in text and "None recorded" in text
    assert "- **Commander:** —" in text and "**Resolution:** _to write_" in text


# -- paging -----------------------------------------------------------------------------------------------------


def test_a_rotation_target_gets_a_synthesized_policy_and_a_policy_target_is_used_as_is() -> None:
    oncall = OncallSection.model_validate(
        {"rotations": {"primary": ROTATION}, "escalation_policies": {"critical": {"steps": [{"notify": "primary"}]}}}
    )
    config = IncidentsSection.model_validate(
        {
            "severities": {
                "sev1": {"description": "x", "respond_within": "15m", "page": "critical"},
                "sev2": {"description": "y", "respond_within": "30m", "page": "primary"},
                "sev3": {"description": "z", "respond_within": "2h"},
            }
        }
    )
    assert [paging.policy_name(config, oncall, s) for s in ("sev1", "sev2", "sev3")] == [
        "critical",
        "incident-sev2",
        None,
    ]
    policy = paging.synthesized_policies(config, oncall)["incident-sev2"]
    assert [(step.notify, step.after) for step in policy.steps] == [
        ("primary", timedelta(0)),
        ("#incidents", timedelta(minutes=30)),
    ]
    merged = paging.with_incident_policies(config, oncall)
    assert set(merged.escalation_policies) == {"critical", "incident-sev2"}
    assert [paging.alert_severity(config, s) for s in ("sev1", "sev2", "sev3")] == ["critical", "warning", "info"]
    assert [paging.incident_severity(config, s) for s in ("critical", "warning", "info", "other")] == [
        "sev1",
        "sev2",
        "sev3",
        "sev3",
    ]


# -- rendering ----------------------------------------------------------------------------------------------------


def test_user_text_keeps_mentions_and_escapes_the_rest() -> None:
    # A person's text may mention people and channels, never broadcast: `<!here>` is shown as typed.
    assert user_text("<@U0ALICE|alice> & <#C0AB|x> <!here> <b>") == "<@U0ALICE> &amp; <#C0AB> &lt;!here&gt; &lt;b&gt;"
    assert (
        user_text("<!channel> <!subteam^S0SRE> <!everyone>")
        == "&lt;!channel&gt; &lt;!subteam^S0SRE&gt; &lt;!everyone&gt;"
    )


def test_topic_and_modal() -> None:
    assert topic(_incident(status="monitoring")) == "INC-3 SEV1 monitoring: Checkout | errors · IC U0ALICE"
    modal = declare_modal(
        IncidentsSection(), title="DatabaseDown", severity="sev2", service="db", metadata={"alerts": ["a-1"]}
    )
    assert modal["callback_id"] == "incidents.declare" and '"alerts": ["a-1"]' in str(modal["private_metadata"])
    blocks = modal["blocks"]
    assert isinstance(blocks, list) and blocks[1]["element"]["initial_option"]["value"] == "sev2"


# -- configuration ---------------------------------------------------------------------------------------------


def test_the_default_section_matches_the_issue() -> None:
    config = parse_config("", "x.yaml").incidents
    assert config.announce_channel == "#incidents" and config.channel_prefix == "inc"
    assert {name: spec.respond_within for name, spec in config.severities.items()} == {
        "sev1": timedelta(minutes=15),
        "sev2": timedelta(minutes=30),
        "sev3": timedelta(hours=2),
    }


@pytest.mark.parametrize(
    ("yaml", "message"),
    [
        (
            "incidents: {severities: {sev1: {description: x, respond_within: 15m, page: primry}}}\n"
            f"oncall: {{rotations: {{primary: {ROTATION}}}}}".replace("'", '"'),
            "incidents.severities.sev1.page: 'primry' is not an on-call rotation or escalation policy; did you mean "
            "'primary'?",
        ),
        (
            "incidents: {severities: {sev1: {description: x, respond_within: 15m, page: primary}}}",
            "(define it under oncall.rotations or oncall.escalation_policies)",
        ),
        ("incidents: {responders: [alice]}", "incidents.responders[0]"),
        ("incidents: {channel_prefix: INC}", "incidents.channel_prefix"),
        ("incidents: {severities: {SEV1: {description: x, respond_within: 15m}}}", "is not a valid severity name"),
        (
            "incidents: {severities: {sev1: {description: x, respond_within: 10s}}}",
            "respond_within: must be from 1m to 7d",
        ),
    ],
)
def test_bad_incident_config_is_reported(yaml: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        parse_config(yaml, "x.yaml")
    assert message in str(raised.value)
