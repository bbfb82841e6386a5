"""Every Redis key chatops uses, in one place.

All keys live under one configurable prefix. The part in braces is a Redis Cluster hash tag: keys that a
single MULTI or Lua script touches together share it, so they land in the same slot.

| key                                        | type   | what it holds                                          |
|--------------------------------------------|--------|--------------------------------------------------------|
| `{prefix}:{idem}:<kind>:<id>`              | string | one Slack request already handled (retries, replays)   |
| `{prefix}:{click}:<user>:<msg>:<action>`   | string | a button press seen moments ago (double clicks)        |
| `{prefix}:{audit}:stream`                  | stream | the audit log: who did what, when, where, with what    |
| `{prefix}:{deploys}:record:<id>`           | string | one deploy or rollback (JSON `DeployRecord`)           |
| `{prefix}:{deploys}:history:<svc>:<env>`   | zset   | deploy ids by creation time                            |
| `{prefix}:{deploys}:active`                | set    | ids of deploys not yet finished                        |
| `{prefix}:{deploys}:deadlines`             | zset   | approval expiries: id by expiry time (claimed once)    |
| `{prefix}:{deploys}:current:<svc>:<env>`   | string | the version running now (last successful deploy)       |
| `{prefix}:{deploys}:lock:<svc>:<env>`      | string | the run lock: owner token, holder, reason, since; TTL  |
| `{prefix}:{deploys}:holds`                 | hash   | manual `/deploy lock`s by `<env>:<svc or *>`           |
| `{prefix}:{deploys}:figs:<svc>:<env>:<day>` | hash  | a UTC day's figure counters: deploys, succeeded, …     |
| `{prefix}:{deploys}:leads:<svc>:<env>:<day>` | list | lead times (us) of that day's successful deploys       |
| `{prefix}:{deploys}:figs_days:<svc>:<env>` | zset   | days with counters (retention finds old ones here)     |
| `{prefix}:{deploys}:unrestored:<svc>:<env>` | zset  | failures waiting for a success, by finish time (us)    |
| `{prefix}:{deploys}:successes:<svc>:<env>` | zset   | the newest 16 successes, by finish time (us)           |
| `{prefix}:{deploys}:figs_backfill`         | hash   | `["svc","env"]` -> 1 once older deploys are counted    |

| `{prefix}:{alerts}:stream`                 | stream | every accepted alert, appended before the HTTP answer  |
| `{prefix}:{alerts}:request:<src>:<id>`     | string | a sender's delivery id already stored (Sentry); TTL    |
| `{prefix}:{alerts}:group:<id>`             | string | one alert group: its members and its Slack message     |
| `{prefix}:{alerts}:open:<channel>:<key>`   | string | the id of the group still firing for this group key    |
| `{prefix}:{alerts}:firing`                 | set    | ids of groups with firing members                      |
| `{prefix}:{alerts}:groups`                 | zset   | every group id by creation time                        |
| `{prefix}:{alerts}:post_due`               | zset   | groups to post, by due time (a claim pushes it ahead)  |
| `{prefix}:{alerts}:update_due`             | zset   | groups whose message needs an update (0: now; leased)  |
| `{prefix}:{alerts}:posting`                | hash   | group -> first post attempt (a retry looks first)      |
| `{prefix}:{alerts}:paging`                 | hash   | page deadline -> first attempt (a retry looks first)   |
| `{prefix}:{alerts}:deadlines`              | zset   | each group's pending page or reminder, by due time     |
| `{prefix}:{alerts}:acks`                   | stream | every acknowledgement (never rewritten)                |
| `{prefix}:{alerts}:dead`                   | stream | stream entries that failed delivery 10 times (kept)    |
| `{prefix}:{alerts}:silences`               | hash   | silences by id                                         |
| `{prefix}:{alerts}:pd_events`              | hash   | PagerDuty events owed: id -> JSON (key name, not key)  |
| `{prefix}:{alerts}:pd_due`                 | zset   | PagerDuty event ids by next try (a claim leases them)  |
| `{prefix}:{alerts}:pd_dead`                | stream | PagerDuty events refused with 400, and its error       |
| `{prefix}:{alerts}:pd_webhook:<id>`        | string | a PagerDuty webhook id already applied; TTL 7 days     |
| `{prefix}:{alerts}:stats:<yyyymmdd>`       | hash   | daily counters: received, posted, deduplicated, …      |
| `{prefix}:{alerts}:stats_older:<span>`     | hash   | older days of `/alerts stats` summed, by generation; TTL |
| `{prefix}:{alerts}:stats_generation`       | string | raised by every write into a day before yesterday      |
| `{prefix}:{<tag>}:replicated`              | string | marker written before `WAIT` (min_replicas_acked); TTL |
| `{prefix}:{sched}:leader`                  | string | the scheduler's leader lease: owner; TTL               |
| `{prefix}:{sched}:runs`                    | hash   | last completed run per scheduled job (ISO time, UTC)   |
| `{prefix}:{status}:ring:<target>:m`        | string | probe counts per minute, last 6 h (ring, BITFIELD)     |
| `{prefix}:{status}:ring:<target>:h`        | string | probe counts per hour, last 31 days (ring, BITFIELD)   |
| `{prefix}:{status}:ring:<target>:d`        | string | probe counts per UTC day, last 400 days (ring)         |
| `{prefix}:{status}:last`                   | hash   | each target's last probe result (JSON)                 |
| `{prefix}:{status}:burning`                | hash   | targets in SLO fast burn (their alert is firing)       |
| `{prefix}:{oncall}:overrides`              | hash   | on-call overrides by id (JSON `OverrideRecord`)        |
| `{prefix}:{oncall}:handoff`                | hash   | per rotation, the last shift whose hand-off was posted |
| `{prefix}:{incidents}:seq`                 | string | the last incident number handed out (INCR)             |
| `{prefix}:{incidents}:record:<id>`         | string | one incident (JSON `Incident`): roles, status, Slack   |
| `{prefix}:{incidents}:timeline:<id>`       | stream | an incident's timeline, append-only, in order          |
| `{prefix}:{incidents}:published`           | hash   | per incident, the last timeline entry posted to Slack  |
| `{prefix}:{incidents}:publish:<id>`        | string | who is posting an incident's timeline now; TTL         |
| `{prefix}:{incidents}:channels`            | hash   | incident channel id -> incident id                     |
| `{prefix}:{incidents}:names`               | hash   | incident channel name -> incident id                   |
| `{prefix}:{incidents}:open`                | set    | ids of incidents not resolved                          |
| `{prefix}:{incidents}:all`                 | zset   | every incident id by declaration time                  |
| `{prefix}:{incidents}:deadlines`           | zset   | "no commander yet" deadlines by due time (claimed)     |
| `{prefix}:{incidents}:figures`             | stream | per resolved incident: time to commander, to resolve   |
| `{prefix}:{incidents}:public:<id>`         | list   | public updates not yet accepted by Statuspage, in order|
| `{prefix}:{incidents}:public_due`          | zset   | incidents whose public updates are due (leased, backoff)|
| `{prefix}:{incidents}:statuspage`          | hash   | incident id -> its Statuspage incident id              |

| `{prefix}:{backups}:record:<id>`           | string | one backup run (JSON `BackupRecord`)                   |
| `{prefix}:{backups}:history:<target>`      | zset   | backup ids of a target by start time                   |
| `{prefix}:{backups}:running`               | set    | ids of backups not yet finished (for interrupted runs) |
| `{prefix}:{backups}:last_good:<target>`    | string | time (ISO) of the target's newest successful backup    |
| `{prefix}:{backups}:first_seen:<target>`   | string | when the RPO check first saw the target (no backup yet)|
| `{prefix}:{backups}:lock:<target>`         | string | the run lock: owner token, holder, reason, since; TTL  |
| `{prefix}:{backups}:firing`                | set    | `<target>:<failed or rpo>` alerts raised, not resolved |
| `{prefix}:{backups}:restore:<id>`          | string | one restore request (JSON `RestoreRecord`)             |
| `{prefix}:{backups}:restores`              | zset   | restore ids by creation time                           |
| `{prefix}:{backups}:deadlines`             | zset   | restore approval expiries (claimed once)               |
| `{prefix}:{backups}:drills:<target>`       | zset   | finished DR drills (JSON `DrillRecord`) by start time  |

Every deploy key shares the `{deploys}` hash tag, so a state change, its indexes and its lock move in one
MULTI or Lua script, on one Redis Cluster slot; backup keys share `{backups}` for the same reason.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

_PREFIX_PATTERN = re.compile(r"^[a-z0-9_-]{1,32}$")


@dataclass(frozen=True)
class Keys:
    """Builds the Redis keys for one deployment of chatops (one prefix)."""

    prefix: str = "chatops"

    def __post_init__(self) -> None:
        if not _PREFIX_PATTERN.match(self.prefix):
            raise ValueError(f"invalid Redis key prefix {self.prefix!r}: use 1-32 of a-z 0-9 _ -")

    def idempotency(self, kind: str, request_id: str) -> str:
        """The marker that a Slack request (by its own id) was already handled."""
        return f"{self.prefix}:{{idem}}:{kind}:{_safe(request_id)}"

    def click(self, user_id: str, message_ref: str, action_id: str, value: str) -> str:
        """The marker that this user pressed this button on this message a moment ago."""
        digest = hashlib.sha256(f"{message_ref}\0{action_id}\0{value}".encode()).hexdigest()[:24]
        return f"{self.prefix}:{{click}}:{_safe(user_id)}:{digest}"

    def deploy(self, part: str, *names: str) -> str:
        """A deploy key: `deploy("record", id)`, `deploy("lock", svc, env)`, `deploy("active")`…"""
        return ":".join([f"{self.prefix}:{{deploys}}:{part}", *(_safe(n) for n in names)])

    def alerts(self, part: str, *names: str) -> str:
        """An alerts key: `alerts("stream")`, `alerts("group", id)`, `alerts("open", channel, key)`…"""
        return ":".join([f"{self.prefix}:{{alerts}}:{part}", *(_safe(n) for n in names)])

    def scheduler(self, part: str, *names: str) -> str:
        """A scheduler key: `scheduler("leader")` (the lease), `scheduler("runs")` (last run per job)."""
        return ":".join([f"{self.prefix}:{{sched}}:{part}", *(_safe(n) for n in names)])

    def status(self, part: str, *names: str) -> str:
        """A /status key: `status("ring", target, "m")`, `status("last")`."""
        return ":".join([f"{self.prefix}:{{status}}:{part}", *(_safe(n) for n in names)])

    def oncall(self, part: str, *names: str) -> str:
        """An on-call key: `oncall("overrides")`, `oncall("handoff")`."""
        return ":".join([f"{self.prefix}:{{oncall}}:{part}", *(_safe(n) for n in names)])

    def backups(self, part: str, *names: str) -> str:
        """A backups key: `backups("record", id)`, `backups("lock", target)`, `backups("running")`…"""
        return ":".join([f"{self.prefix}:{{backups}}:{part}", *(_safe(n) for n in names)])

    def incidents(self, part: str, *names: str) -> str:
        """An incidents key: `incidents("record", id)`, `incidents("timeline", id)`, `incidents("open")`…"""
        return ":".join([f"{self.prefix}:{{incidents}}:{part}", *(_safe(n) for n in names)])

    def audit_stream(self) -> str:
        """The audit log stream."""
        return f"{self.prefix}:{{audit}}:stream"


def _safe(part: str) -> str:
    """Keeps user-influenced key parts short and free of separators and braces."""
    cleaned = re.sub(r"[^A-Za-z0-9._-]", "_", part)
    if len(cleaned) <= 80:
        return cleaned
    return hashlib.sha256(part.encode()).hexdigest()
