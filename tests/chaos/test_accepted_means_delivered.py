"""Issue 12, "Accepted means delivered", tested from outside: `chatops serve` replicas on one Redis take an alert
storm through the signed generic webhook while replicas are killed, Redis restarts (or comes back empty) and Slack
fails (429, 500, a proxy's HTML 502, timeouts, applied-then-500). Once delivery has drained, what reached the Slack
emulator is checked:

- every alert answered 2xx has a top-level message with its title in its channel (none lost);
- no alert has more than one top-level message (none duplicated);
- every critical alert, which nobody acknowledges here, paged its step-1 user by DM at least once, and, when no
  replica was killed, no step paged anyone twice.

"Redis back empty" is the exception by design: alerts accepted before the wipe were in the data thrown away and no
one can deliver them; the test asserts that the bot recovers instead: every alert whose accepted request was sent
after the empty Redis was up is delivered and paged.

The short run (the normal suite, `pytest -m chaos`): 2 replicas, 600 alerts per scenario, two scenarios of a few
faults each, one with group_wait 0s and one with 1s. The long run, by hand: `CHATOPS_CHAOS=long pytest -m chaos -s`:
3 replicas, 5,000 alerts per scenario, every fault on its own with both group_waits, then all of them together.
`CHATOPS_CHAOS_ONLY=redis,kill` picks scenarios by name, `CHATOPS_CHAOS_ALERTS=600` sets the storm's size; each
run prints a figures line (use `-s`) and appends it to $CHATOPS_CHAOS_REPORT when set. The short scenarios run side
by side, each on its own cluster. No assertion is about time: the drain waits until everything arrived, or until the
bot has made no Slack call for longer than any of its retries and leases (70 s), or a generous deadline.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from pathlib import Path

import pytest

from tests.chaos.harness import (
    LONG,
    LONG_SCENARIOS,
    SHORT,
    SHORT_SCENARIOS,
    Scenario,
    run_scenario,
    selected,
)

LONG_RUN = os.environ.get("CHATOPS_CHAOS", "").lower() == "long"
SIZE = LONG if LONG_RUN else SHORT
if os.environ.get("CHATOPS_CHAOS_ALERTS"):  # e.g. a quick look at one long scenario
    SIZE = dataclasses.replace(SIZE, alerts=int(os.environ["CHATOPS_CHAOS_ALERTS"]))
# The short scenarios run side by side (each on its own cluster) to stay within the suite's time; long ones in turn.
WAVES = [(s,) for s in selected(LONG_SCENARIOS)] if LONG_RUN else [tuple(selected(SHORT_SCENARIOS))]

pytestmark = [pytest.mark.chaos, pytest.mark.timeout(3 * 3600 if LONG_RUN else 600)]

# On the code of 2026-12-02 (before the issue 12 fixes) the short run FAILS: accepted alerts are lost and critical
# alerts are not paged in both of its scenarios (see the figures in the branch's report).


@pytest.mark.parametrize("wave", WAVES, ids=["+".join(s.name for s in wave) for wave in WAVES])
async def test_every_accepted_alert_is_posted_once_and_paged(wave: tuple[Scenario, ...], tmp_path: Path) -> None:
    report = os.environ.get("CHATOPS_CHAOS_REPORT")
    runs = [run_scenario(s, SIZE, tmp_path / s.name, Path(report) if report else None) for s in wave]
    problems = []
    for scenario, figures in zip(wave, await asyncio.gather(*runs), strict=True):
        found = figures.problems(strict_pages=not scenario.kills_replicas)
        if figures.accepted == 0:
            found.append("the storm got no alert accepted")
        if found:
            problems += [figures.line(), *(f"  {p}" for p in found), *(f"    {e}" for e in figures.events)]
    assert not problems, "\n".join(problems)
