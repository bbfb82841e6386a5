"""The humaniser (durations and counts for people) and the one escaping rule for text that reaches Slack."""

from __future__ import annotations

from datetime import timedelta

import pytest

from bot.text.blocks import external_text, show_placeholders, user_text
from bot.text.humanize import duration, plural


@pytest.mark.parametrize(
    ("span", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(microseconds=300), "under 1 ms"),
        (timedelta(milliseconds=12), "12 ms"),
        (timedelta(seconds=50, microseconds=556425), "51s"),
        (timedelta(seconds=59.6), "1m"),
        (timedelta(seconds=245), "4m 5s"),
        (timedelta(hours=4, minutes=5, seconds=10), "4h 5m"),
        (timedelta(days=1, hours=3), "1 day 3h"),
        (timedelta(days=3), "3 days"),
        (timedelta(days=30), "30 days"),
        (timedelta(weeks=12), "12 weeks"),
        (timedelta(seconds=-5), "0s"),
    ],
)
def test_durations_read_as_a_person_would_say_them(span: timedelta, text: str) -> None:
    assert duration(span) == text


def test_counts_agree_with_their_noun() -> None:
    assert plural(1, "acknowledgement") == "1 acknowledgement"
    assert plural(2, "table") == "2 tables" and plural(0, "table") == "0 tables"
    assert plural(3, "entry", "entries") == "3 entries"


def test_one_escaping_rule_for_text_that_reaches_slack() -> None:
    typed = "R&D <b>bold</b> <@U0CAROL> <#C0OPS> <!here> <!subteam^S1> <https://evil|click>"
    assert external_text(typed) == (
        "R&amp;D &lt;b&gt;bold&lt;/b&gt; &lt;@U0CAROL&gt; &lt;#C0OPS&gt; &lt;!here&gt; "
        "&lt;!subteam^S1&gt; &lt;https://evil|click&gt;"
    )
    # People may mention colleagues and channels; never broadcast or link.
    assert user_text(typed) == (
        "R&amp;D &lt;b&gt;bold&lt;/b&gt; <@U0CAROL> <#C0OPS> &lt;!here&gt; "
        "&lt;!subteam^S1&gt; &lt;https://evil|click&gt;"
    )
    usage = "/backup restore <target> <id> [into <ENV_VAR> | as <new-instance>] by <@U0BOB> <#C0OPS> <!here>"
    assert show_placeholders(usage) == (
        "/backup restore &lt;target&gt; &lt;id&gt; [into &lt;ENV_VAR&gt; | "
        "as &lt;new-instance&gt;] by <@U0BOB> <#C0OPS> <!here>"
    )
