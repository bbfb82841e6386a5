"""`render_template`: placeholders, escapes, errors that name the problem, and (by hypothesis) that user text is
only ever a value: whatever a service or version holds, rendering raises nothing but DeployError and never changes
how many arguments a command gets."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrations.deploy.base import (
    DeployError,
    DeployStep,
    render_template,
    template_fields,
    url_quote,
)

ARGV = [
    "./scripts/deploy.sh",
    "{service}",
    "{version}",
    "--env={environment}",
    "{weight}",
    "{deploy_id}",
    "{previous_version}",
    "{{literal}}",
]


def make_step(service: str = "web", version: str = "v1.4.2", **overrides: object) -> DeployStep:
    values: dict[str, object] = {
        "deploy_id": "d-1",
        "service": service,
        "environment": "production",
        "version": version,
        "previous_version": "v1.4.1",
        "weight": 50,
        "rollback": False,
        "requested_by": "U0ALICE",
    }
    values.update(overrides)
    return DeployStep(**values)


def test_every_placeholder_and_literal_braces() -> None:
    rendered = [render_template(part, make_step()) for part in ARGV]
    assert rendered == ["./scripts/deploy.sh", "web", "v1.4.2", "--env=production", "50", "d-1", "v1.4.1", "{literal}"]


def test_unknown_placeholders_and_stray_braces_are_deploy_errors_naming_them() -> None:
    with pytest.raises(DeployError, match=r"unknown placeholder \{versoin\}"):
        render_template("deploy {versoin}", make_step())
    with pytest.raises(DeployError, match="unknown placeholder"):
        render_template("{service.__class__}", make_step())  # no attribute access, unlike str.format
    with pytest.raises(DeployError, match="unbalanced"):
        render_template("oops {", make_step())
    with pytest.raises(DeployError, match="unbalanced"):
        render_template("oops }", make_step())


def test_extra_values_and_escaping_for_urls() -> None:
    step = make_step(version="../../admin?x=1")
    url = render_template(
        "https://h/deploys/{external_id}/{version}", step, extra={"external_id": "a/b"}, escape=url_quote
    )
    assert url == "https://h/deploys/a%2Fb/..%2F..%2Fadmin%3Fx%3D1"
    assert template_fields("{external_id}-{service}", extra=("external_id",)) == ["external_id", "service"]


def test_a_nul_in_a_value_is_refused_by_name() -> None:
    with pytest.raises(DeployError, match="version contains a NUL"):
        render_template("{version}", make_step(version="v1\x00"))


@settings(max_examples=300, deadline=None)
@given(service=st.text(), version=st.text())
def test_user_text_never_breaks_argv(service: str, version: str) -> None:
    step = make_step(service=service, version=version)
    try:
        rendered = [render_template(part, step) for part in ARGV]
    except DeployError:
        assert "\x00" in service + version
        return
    assert len(rendered) == len(ARGV)
    assert rendered[1] == service and rendered[2] == version
    # Text that looks like a placeholder is not expanded again.
    assert rendered[3] == "--env=production"


@settings(max_examples=300, deadline=None)
@given(template=st.text(), version=st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_any_template_renders_or_raises_deploy_error(template: str, version: str) -> None:
    try:
        result = render_template(template, make_step(version=version))
    except DeployError:
        return
    assert isinstance(result, str)


@given(value=st.text(alphabet=st.characters(blacklist_characters="\x00")))
def test_user_text_that_looks_like_a_placeholder_stays_literal(value: str) -> None:
    step = make_step(service="{version}", version=value)
    assert render_template("{service}:{version}", step) == "{version}:" + value
