"""The alert pipeline: accepted alerts are appended to a Redis Stream before the webhook is answered; a consumer
group delivers them to Slack in order (dedup into the open group, routing, silences), a flusher updates messages
at most once per pass (so storms stay inside Slack's rate limits), and people act through buttons or /alerts.
Neither waits on Slack's rate limit: a channel that answered 429 is left alone until its Retry-After ends, and what
was due there (a post, an update, queued thread replies) is due again then. Thread replies are queued in Redis
(an alert resolved: in the change's own transaction) and sent by the flusher, all that a group has queued as one.

A source with the raw intake (`RawIntake`) has its admitted bodies stored as they came; the consumer normalises them
with that source, and a body it cannot normalise goes to the dead-letter stream at once (counted in
`chatops_alert_entries_dead_lettered` and logged), never dropped."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from statistics import mean
from typing import Literal

from redis.exceptions import RedisError, ResponseError
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts import escalation
from bot.alerts.config import AlertsSection
from bot.alerts.membership import Applied, apply_events, delivery_runs
from bot.alerts.model import AlertGroup, Member, new_group_id
from bot.alerts.pacing import Batch, rest_after
from bot.alerts.policies import EscalationSettings, NoEscalation
from bot.alerts.render import alert_message, page_closed
from bot.alerts.routing import Destination, Matcher, group_key, parse_matcher, route, silence_matchers, silenced_by
from bot.alerts.store import CONSUMER_GROUP, COUNTABLE, NOTE, AlertStore, RawEntry
from bot.platform.audit import AuditLog
from bot.platform.errors import StoreUnavailable, UserFacingError
from bot.platform.metrics import Metrics
from bot.platform.slack_client import (
    error_code,
    is_transient,
    maybe_applied,
    retry_after_seconds,
    without_rate_limit_waits,
)
from bot.platform.slack_post import OncePoster, post_message
from bot.platform.store import Pipe
from bot.platform.tasks import Passes
from bot.text.blocks import external_text
from bot.text.humanize import duration as human_duration
from integrations.alerts.model import Alert
from integrations.alerts.source import AlertSource, RawIntake

log = logging.getLogger(__name__)

FLUSH_SECONDS = 0.25
ABANDONED_AFTER_MS = 30_000
CLAIM_ABANDONED_EVERY_SECONDS = 10
DEAD_LETTER_AFTER = 10
READ_BATCH = 100  # stream entries the consumer reads at a time
POST_LEASE_SECONDS = 30
POSTS_PER_CLAIM = 10
# A group's queued thread replies go out as one reply (`reply_lines`): of the "resolved" lines at most this many,
# the rest counted ("…and 190 more"; the message itself shows every member's state, and a storm of resolves is one
# reply, not 200); every other note is shown, at most NOTES_PER_REPLY a reply.
REPLY_LINES = 10
NOTES_PER_REPLY = 20
ALL_REPLIES = 1_000_000
RETRY_AFTER = timedelta(seconds=2)
FAILURES_BEFORE_PAUSE = 3
MAX_PAUSE_SECONDS = 10.0


@dataclass(frozen=True)
class AlertFigures:
    """What `/alerts stats` reports: the counters over a window, acknowledgements and mean time to acknowledge."""

    totals: dict[str, int]
    acked: int
    mean_to_ack: timedelta | None


class AlertPipeline:
    """Ingest, delivery and actions for alerts; one per process, built by the composition root."""

    def __init__(
        self,
        *,
        config: AlertsSection,
        store: AlertStore,
        slack: AsyncWebClient,
        audit: AuditLog,
        clock: Callable[[], datetime],
        consumer: str | None = None,
        oncall: EscalationSettings | None = None,
        heartbeat: Callable[[str], None] | None = None,
    ) -> None:
        self.config = config
        # The on-call section's policies (with incidents' synthesized ones), from the composition root: alerts
        # walk them without importing on-call, which sits above.
        self.oncall: EscalationSettings = oncall or NoEscalation()
        self._store = store
        self._slack = slack
        self._audit = audit
        self._clock = clock
        self.consumer = consumer or f"bot-{secrets.token_hex(4)}"
        self.delivered = asyncio.Event()
        self.posts_due = asyncio.Event()  # set when a new group is due, so the flusher need not wait its pause
        # While Slack fails, new groups are left to the flusher (which backs off) rather than posted by the consumer,
        # whose work is to move accepted alerts into groups whatever Slack does.
        self._slack_failing = False
        # Alert messages and their thread replies never wait out Slack's rate limit in place: a channel that
        # answered 429 is left alone until its Retry-After ends (what was due there is due again then), so neither
        # the consumer nor the other channels' messages queue behind it.
        self._messages = without_rate_limit_waits(slack)
        self._poster = OncePoster(self._messages, event_type="chatops_alert")
        self._rate_limited_until: dict[str, datetime] = {}
        self._slack_timeout = float(getattr(slack, "timeout", 10) or 10)
        self._beat = heartbeat or (lambda _loop: None)
        self._sources: Mapping[str, AlertSource] = {}
        self._metrics: Metrics | None = None
        self.webhooks_stored = 0  # webhooks stored by this process, so the consumer can tell they keep coming

    def use_sources(self, sources: Mapping[str, AlertSource], metrics: Metrics | None = None) -> None:
        """The configured alert sources, which normalise the bodies their raw intake stored (and the metrics that
        count what could not be)."""
        self._sources = sources
        self._metrics = metrics
        self.flush_passes = Passes()  # the flusher's passes: a quiet one means no post or update was due
        self._flushed = 0  # posts and updates claimed by any flush, so a pass knows whether it did work

    # -- ingest -------------------------------------------------------------------------------------------

    async def ingest(self, alerts: Sequence[Alert], *, once: str | None = None) -> str | None:
        """Stores alerts durably (raises StoreUnavailable otherwise: the webhook must answer 5xx). With `once` (a
        sender's delivery id), alerts already stored under that id are not stored again: then None is returned."""
        if not alerts:
            return None
        self.webhooks_stored += 1
        if once is not None:
            return await self._store.append_once(alerts, self._clock(), once)
        return await self._store.append(alerts, self._clock())

    async def ingest_raw(self, source: str, body: bytes, count: int, received_at: datetime) -> str:
        """Stores a body admitted by `source`'s raw intake (`count` alerts) durably, to be normalised by the
        consumer; raises StoreUnavailable otherwise (the webhook must answer 5xx)."""
        self.webhooks_stored += 1
        return await self._store.append_raw(source, body, count, received_at)

    async def normalised(self, entry_id: str, entry: RawEntry) -> list[Alert]:
        """The alerts of a stored body, normalised by its source; one that cannot be (its source is not configured
        here, or it does not parse) is moved to the dead-letter stream, counted and logged, and gives none."""
        source = self._sources.get(entry.source)
        try:
            if not isinstance(source, RawIntake):
                raise ValueError(f"alert source {entry.source!r} is not configured for raw intake in this process")
            return list(source.normalise(entry.body.encode("utf-8", "surrogateescape"), entry.received_at).alerts)
        except Exception as error:  # whatever the body holds: recorded, never dropped, and the stream moves on
            reason = getattr(error, "reason", None) or f"{type(error).__name__}: {error}"
            log.error(
                "alert entry %s from %s could not be normalised (%s); moved to the dead-letter stream",
                entry_id,
                entry.source or "an unknown source",
                reason,
            )
            await self._store.dead_letter_raw(entry_id, entry, reason)
            if self._metrics is not None:
                self._metrics.alerts_dead_lettered.labels(reason="unreadable").inc()
            return []

    # -- delivery -----------------------------------------------------------------------------------------

    async def run_consumer(self, stop: asyncio.Event) -> None:
        """Delivers stream entries until `stop`; failed entries stay pending and are retried in order. Survives any
        Redis or Slack failure: the consumer group is (re)created whenever Redis answers without it."""
        needs_group = True
        retry_pending = True
        last_claim = 0.0
        failures: dict[str, int] = {}
        current: tuple[str, list[Alert]] | None = None
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            try:
                if needs_group:
                    await self._store.ensure_consumer_group()
                    needs_group = False
                if loop.time() - last_claim > CLAIM_ABANDONED_EVERY_SECONDS:
                    last_claim = loop.time()
                    if await self._store.claim_abandoned(self.consumer, ABANDONED_AFTER_MS):
                        retry_pending = True
                started, webhooks = loop.time(), self.webhooks_stored
                entries = await self._store.read(self.consumer, pending=retry_pending, count=READ_BATCH)
                self._beat("alert-delivery")
                if retry_pending and not entries:
                    retry_pending = False
                    continue
                if retry_pending:
                    # Entries that failed before are retried one at a time, so a failure is counted against the one
                    # entry that causes it (the tenth moves it to the dead-letter stream).
                    for entry_id, payload in entries:
                        if stop.is_set():
                            break
                        alerts = payload if isinstance(payload, list) else await self.normalised(entry_id, payload)
                        current = (entry_id, alerts)
                        await self.deliver_events(_events(entry_id, alerts))
                        await self._store.ack([entry_id])
                        failures.pop(entry_id, None)
                        current = None
                elif entries:
                    await self._deliver_entries(entries)
                self.delivered.set()
                # Behind, with webhooks still coming: rest, so that they keep most of the loop (bot/alerts/pacing.py).
                batch = Batch(loop.time() - started, len(entries) >= READ_BATCH, self.webhooks_stored - webhooks)
                rest = rest_after(batch)
                if rest:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rest)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                retry_pending = True
                if _no_group(error):
                    log.warning("the alert stream's consumer group is gone (Redis restarted empty?); creating it again")
                    needs_group = True
                elif _infrastructure(error):
                    log.warning("alert delivery paused: %s; the entry stays pending and is retried", _describe(error))
                else:
                    log.exception("alert delivery failed; the entry stays pending and is retried")
                    if current is not None:
                        await self._count_failure(failures, current, error)
                current = None
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)

    async def _deliver_entries(self, entries: Sequence[tuple[str, list[Alert] | RawEntry]]) -> None:
        """Delivers new entries read together in runs (`delivery_runs`), each run's events in one `deliver_events`
        and its entries acknowledged together: in a backlog (a storm, a restart) a group that many entries touch is
        read and written once a run, not once an entry. A run that fails stays pending; the retry goes entry by
        entry."""
        normalised = [
            (entry_id, payload if isinstance(payload, list) else await self.normalised(entry_id, payload))
            for entry_id, payload in entries
        ]
        for run in delivery_runs(normalised):
            await self.deliver_events([event for entry_id, alerts in run for event in _events(entry_id, alerts)])
            await self._store.ack([entry_id for entry_id, _ in run])

    async def _count_failure(
        self, failures: dict[str, int], current: tuple[str, list[Alert]], error: Exception
    ) -> None:
        """Counts a failure of an entry that is not Redis's or Slack's fault; the tenth moves it to the dead-letter
        stream (kept there, listed by /alerts, so one poison entry cannot hold up every alert behind it)."""
        entry_id, alerts = current
        failures[entry_id] = failures.get(entry_id, 0) + 1
        if failures[entry_id] < DEAD_LETTER_AFTER:
            return
        log.error("alert entry %s failed %d times; moved to the dead-letter stream", entry_id, DEAD_LETTER_AFTER)
        try:
            await self._store.dead_letter(entry_id, alerts, f"{type(error).__name__}: {error}")
            failures.pop(entry_id, None)
            if self._metrics is not None:
                self._metrics.alerts_dead_lettered.labels(reason="failing").inc()
        except Exception:
            log.exception("could not dead-letter alert entry %s; it stays pending", entry_id)

    async def deliver_events(self, events: Sequence[tuple[str, Alert]]) -> None:
        """Puts the alerts of stream entries where they belong, in order: the open group of their key in each
        routed channel, or a new group. Silences are read once; the events that share a group change it in one
        atomic update (bot/alerts/membership.py)."""
        now = self._clock()
        silences = await self._live_silences()
        by_group: dict[tuple[str, str], list[tuple[str, Alert, Destination]]] = {}
        silenced = 0
        for event_id, alert in events:
            if silenced_by(silences, alert.labels, now) is not None:
                silenced += 1
                continue
            key = group_key(self.config, alert.source, alert.fingerprint, alert.labels)
            for destination in route(self.config, {**alert.labels, "severity": alert.severity}):
                by_group.setdefault((destination.channel, key), []).append((event_id, alert, destination))
        if silenced:
            await self._store.count(now, "silenced", silenced)
        for (channel, key), pending in by_group.items():
            await self._deliver_to_group(channel, key, pending, now)

    async def _deliver_to_group(
        self, channel: str, key: str, pending: list[tuple[str, Alert, Destination]], now: datetime
    ) -> None:
        """Applies `pending` (events of one key routed to `channel`) to the open group, opening one where there is
        none; an event that lost the race to open a group three times in a row is given up, as before batching."""
        tries = 0
        while pending:
            open_id = await self._store.open_group(channel, key)
            if open_id is not None:
                used = await self._update_members(open_id, [(event_id, alert) for event_id, alert, _ in pending], now)
                pending, tries = pending[used:], 0
                continue
            event_id, alert, destination = pending[0]
            if alert.status == "resolved":
                await self._store.count(now, "resolved_unknown")
                pending, tries = pending[1:], 0
            elif await self._open_group_with(event_id, alert, destination, key, now):
                pending, tries = pending[1:], 0
            else:
                tries += 1
                if tries == 3:
                    pending, tries = pending[1:], 0

    async def _open_group_with(
        self, event_id: str, alert: Alert, destination: Destination, key: str, now: datetime
    ) -> bool:
        """Opens a new group for `key` in the destination's channel with this alert; False if another consumer
        opened one first."""
        group = AlertGroup(
            id=new_group_id(),
            group_key=key,
            channel=destination.channel,
            escalation=destination.escalation,
            members={alert.fingerprint: Member.from_alert(alert, now=now, event_id=event_id)},
            created_at=now,
            updated_at=now,
        )
        wait = self.config.group_wait
        policy = self.oncall.escalation_policies.get(destination.escalation or "")
        if policy is not None:  # the first page waits for the message, so its thread can be mentioned
            group = escalation.start(group, policy, now, not_before=now + wait)
        # Due once group_wait has passed; the flusher posts it then, retrying until Slack takes it. With
        # no wait it is posted here at once where Slack allows, so what follows usually finds it posted.
        if not await self._store.create_group(group, post_at=now + max(wait, timedelta(0))):
            return False
        await self._store.count(now, "groups")
        if wait <= timedelta(0):
            await self._post_at_once(group, now)
        self.posts_due.set()
        return True

    async def _post_at_once(self, group: AlertGroup, now: datetime) -> None:
        """The consumer's post of a new group that has no group_wait. It never waits on Slack: while Slack fails
        the group stays due for the flusher (which backs off), and while the channel is rate limited it is due when
        Slack's Retry-After ends; either way the consumer goes on with the alerts behind it."""
        if self._slack_failing:
            return
        limited_until = self._limited_until(group.channel)
        if limited_until is not None:
            await self._store.postpone_post(group.id, limited_until)
            return
        if not await self._store.claim_post(group.id, now, lease_seconds=self._lease_seconds()):
            return  # the flusher has it
        if not await self.post(group.id, claimed=True):
            await self._store.retry_post_at(group.id, self._clock() + RETRY_AFTER)

    def _limited_until(self, channel: str) -> datetime | None:
        """When Slack's rate limit of `channel` ends, if it has not yet (from its last 429's Retry-After)."""
        until = self._rate_limited_until.get(channel)
        if until is None:
            return None
        if until <= self._clock():
            del self._rate_limited_until[channel]
            return None
        return until

    def _note_rate_limit(self, channel: str, error: SlackApiError) -> datetime | None:
        """When Slack answered 429 for `channel`: notes until when to leave the channel alone, and returns it."""
        wait = retry_after_seconds(error)
        if wait is None:
            return None
        until = self._rate_limited_until[channel] = self._clock() + timedelta(seconds=wait)
        return until

    async def _update_members(self, group_id: str, events: list[tuple[str, Alert]], now: datetime) -> int:
        """Applies events to the open group in one atomic update, then says what happened (thread replies for
        resolved alerts, closed pages when the group resolved, the daily counters); returns how many were used."""
        applied: list[Applied] = []

        def change(group: AlertGroup) -> AlertGroup:
            after, done = apply_events(group, events, now)
            applied[:] = done
            return after

        def resolved_at_source(after: AlertGroup) -> bool:
            return after.state == "resolved" and bool(applied) and applied[-1].outcome == "resolved"

        def queue_replies(pipe: Pipe, after: AlertGroup) -> None:
            for result in applied:
                if result.outcome == "resolved" and result.member is not None:
                    member = result.member
                    took = human_duration((member.ends_at or now) - member.starts_at)
                    text = f":white_check_mark: *{external_text(member.title)}* resolved (fired for {took})."
                    self._store.queue_reply(pipe, group_id, text, countable=True)
            if resolved_at_source(after):
                took = human_duration(now - after.created_at)
                self._queue_pages_closed(pipe, after, f":white_check_mark: Resolved at the source after {took}.")

        _, after = await self._store.update_group(group_id, change, also=queue_replies)
        deduplicated = sum(1 for a in applied if a.outcome == "deduplicated")
        if deduplicated:
            await self._store.count(now, "deduplicated", deduplicated)
        if any(result.outcome == "resolved" for result in applied):
            self.posts_due.set()  # the flusher sends the thread replies and closes the pages
        if resolved_at_source(after):
            await self._store.count(now, "resolved")
            if after.acked_by is None and after.resolved_by is None:
                await self._store.count(now, "resolved_without_action")
        return len(applied)

    async def post(self, group_id: str, *, claimed: bool = False) -> bool:
        """Posts a group's message once: a group that has one is only updated, and a retry after a crash or an
        ambiguous Slack answer finds the message it may already have posted (its metadata carries the group id)
        instead of posting it twice. True when nothing is left for the caller to do: the message exists, Slack
        refused it for good, or Slack rate-limits the channel (the post is then due again when Retry-After ends;
        `claimed`: the caller holds the post's lease). False (retried later) while Slack fails in a way a later
        attempt can get past. Redis errors raise."""
        group = await self._store.get_group(group_id)
        if group is None or group.message_ts is not None:
            await self._store.drop_post(group_id)
            return True
        limited_until = self._limited_until(group.channel)
        if limited_until is not None:
            await self._post_later(group_id, limited_until, claimed=claimed)
            return True
        now = self._clock()
        attempt = await self._store.begin_post(group_id)
        text, blocks = alert_message(group, now=now, max_lines=self.config.max_group_lines)
        try:
            posted = await self._poster.post_once(group.channel, group.id, attempt=attempt, text=text, blocks=blocks)
        except SlackApiError as error:
            code = error_code(error)
            if is_transient(error):
                if attempt.first and not maybe_applied(error):  # certainly not posted: a retry need not look for it
                    await self._store.forget_attempt("posting", group_id)
                await self._store.count(now, "post_retries")
                limited_until = self._note_rate_limit(group.channel, error)
                if limited_until is not None:
                    log.info("alert %s waits for Slack's rate limit of %s", group_id, group.channel)
                    await self._post_later(group_id, limited_until, claimed=claimed)
                    return True
                log.warning("alert %s not posted yet (Slack: %s); retrying", group_id, code)
                return False
            log.error(
                "alert %s cannot be posted to %s: %s (it stays stored; fix the route's channel)",
                group_id,
                group.channel,
                code,
            )
            await self._store.drop_post(group_id)
            await self._store.count(now, "undeliverable")
            return True

        def record(pipe: Pipe, after: AlertGroup) -> None:
            self._store.queue_posted(pipe, group_id)
            if after.updated_at != group.updated_at:  # it changed while being posted: show the latest state
                pipe.zadd(self._store.k("update_due"), {group_id: 0})

        await self._store.update_group(
            group_id,
            lambda g: g.model_copy(update={"message_channel": posted["channel"], "message_ts": posted["ts"]}),
            dirty=False,
            also=record,
        )
        await self._store.count(self._clock(), "posted")
        return True

    async def _post_later(self, group_id: str, when: datetime, *, claimed: bool) -> None:
        """Makes a post due at `when`: the claimer's own lease is replaced; anyone else's claim is left alone."""
        if claimed:
            await self._store.retry_post_at(group_id, when)
        else:
            await self._store.postpone_post(group_id, when)

    async def run_flusher(self, stop: asyncio.Event) -> None:
        """Posts groups whose group_wait ended and updates changed messages, one Slack call per group per pass;
        survives every Redis and Slack failure (what was not done stays due in Redis and is tried again)."""
        pause = FLUSH_SECONDS
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            self.posts_due.clear()
            number, flushed = self.flush_passes.begin(), self._flushed
            started, webhooks, rest = loop.time(), self.webhooks_stored, 0.0
            try:
                slack_failing = self._slack_failing = await self.flush(stop)
                self._beat("alert-messages")
                # Slack failing: back off (up to 10 s) rather than hammer it; what is due stays due in Redis.
                pause = min(pause * 2, MAX_PAUSE_SECONDS) if slack_failing else FLUSH_SECONDS
                self.flush_passes.end(number, worked=slack_failing or self._flushed != flushed)
                # Webhooks arriving while messages keep changing: rest, as the consumer does (bot/alerts/pacing.py).
                worked = self._flushed != flushed
                rest = rest_after(Batch(loop.time() - started, worked, self.webhooks_stored - webhooks))
            except asyncio.CancelledError:
                raise
            except Exception as error:
                pause = FLUSH_SECONDS * 4
                if _infrastructure(error):
                    log.warning("alert messages paused: %s; will retry", _describe(error))
                else:
                    log.exception("alert message flush failed; will retry")
            if pause > FLUSH_SECONDS or rest:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(pause, FLUSH_SECONDS + rest))
                continue
            with contextlib.suppress(TimeoutError):  # a new group due wakes the flusher at once
                await asyncio.wait_for(_first_of(self.posts_due, stop), FLUSH_SECONDS)

    async def flush(self, stop: asyncio.Event | None = None) -> bool:
        """One pass: due posts, then due message updates. Each is leased in Redis while it is worked on, so a
        process that dies (or a Slack call that fails) leaves it to come due again; nothing is removed before
        Slack has it. After a few failures in a row (Slack is down) the pass ends and the rest waits. True when
        the pass ended on Slack failing."""
        now = self._clock()
        failures_in_a_row = 0
        # Posts first, a few claimed at a time: at Slack's one message a second in a channel, each claim's lease
        # still holds when its last post is made (a lapsed lease would let another process post it as well).
        claimed = POSTS_PER_CLAIM
        while claimed == POSTS_PER_CLAIM and failures_in_a_row < FAILURES_BEFORE_PAUSE:
            if stop is not None and stop.is_set():
                break
            due = await self._store.claim_due_posts(
                self._clock(), lease_seconds=self._lease_seconds(), count=POSTS_PER_CLAIM
            )
            claimed = len(due)
            self._flushed += claimed
            for group_id in due:
                if (stop is not None and stop.is_set()) or failures_in_a_row >= FAILURES_BEFORE_PAUSE:
                    await self._store.retry_post_at(group_id, now)
                    continue
                if await self.post(group_id, claimed=True):
                    failures_in_a_row = 0
                else:
                    failures_in_a_row += 1
                    await self._store.retry_post_at(group_id, self._clock() + RETRY_AFTER)
        updates, lease = await self._store.claim_updates(self._clock(), lease_seconds=self._lease_seconds())
        self._flushed += len(updates)
        for group_id in updates:
            if (stop is not None and stop.is_set()) or failures_in_a_row >= FAILURES_BEFORE_PAUSE:
                await self._store.mark_dirty([group_id])
                continue
            outcome = await self._update_message(group_id)
            if outcome == "done":
                failures_in_a_row = 0
                await self._store.update_done(group_id, lease)
            elif outcome == "failed":
                failures_in_a_row += 1
                await self._store.retry_update_at(group_id, self._clock() + RETRY_AFTER)
        # Then the page DMs to close, then the thread replies: claimed, worked through and retried alike.
        for claim, work, retry_at in (
            (self._store.claim_page_closings, self._close_pages, self._store.retry_page_closing_at),
            (self._store.claim_replies, self._send_replies, self._store.retry_replies_at),
        ):
            group_ids = await claim(self._clock(), lease_seconds=self._lease_seconds())
            failures_in_a_row = await self._work_through(
                group_ids, work, retry_at, failures_in_a_row=failures_in_a_row, stop=stop, now=now
            )
        return failures_in_a_row > 0

    async def _work_through(
        self,
        claimed: Sequence[str],
        work: Callable[[str], Awaitable[bool]],
        retry_at: Callable[[str, datetime], Awaitable[None]],
        *,
        failures_in_a_row: int,
        stop: asyncio.Event | None,
        now: datetime,
    ) -> int:
        """Works through claimed groups with `work` (False: Slack failed; that one is due again RETRY_AFTER later).
        Once stopped, or after FAILURES_BEFORE_PAUSE failures in a row, the rest are due again at `now`. Returns
        the failures in a row so far."""
        self._flushed += len(claimed)
        for group_id in claimed:
            if (stop is not None and stop.is_set()) or failures_in_a_row >= FAILURES_BEFORE_PAUSE:
                await retry_at(group_id, now)
                continue
            if await work(group_id):
                failures_in_a_row = 0
            else:
                failures_in_a_row += 1
                await retry_at(group_id, self._clock() + RETRY_AFTER)
        return failures_in_a_row

    async def _update_message(self, group_id: str) -> Literal["done", "failed", "later"]:
        """Shows a group's current state on its message (done); `failed` if Slack failed in a way worth retrying;
        `later` if Slack rate-limits the channel (the update, claimed by the caller, is due when that ends)."""
        group = await self._store.get_group(group_id)
        if group is None or group.message_ts is None:
            return "done"  # gone, or not posted yet: the post shows the latest state
        limited_until = self._limited_until(group.channel)
        if limited_until is not None:
            await self._store.retry_update_at(group_id, limited_until)
            return "later"
        text, blocks = alert_message(group, now=self._clock(), max_lines=self.config.max_group_lines)
        try:
            await self._messages.chat_update(
                channel=group.message_channel or group.channel, ts=group.message_ts, text=text, blocks=blocks
            )
        except SlackApiError as error:
            limited_until = self._note_rate_limit(group.channel, error)
            if limited_until is not None:
                await self._store.retry_update_at(group_id, limited_until)
                return "later"
            log.warning("could not update alert %s: %s", group_id, error_code(error))
            return "failed" if is_transient(error) else "done"
        return "done"

    async def _send_replies(self, group_id: str) -> bool:
        """Sends a group's queued thread replies once its message is posted, as one reply (REPLY_LINES of them, and
        how many more there were), once: a retry after a crash or an answer that does not rule out success looks
        for the reply in the thread (its metadata carries the attempt's key) and sends exactly the same lines if it
        is not there. False if Slack failed in a way worth retrying."""
        group = await self._store.get_group(group_id)
        if group is None or (group.message_ts is None and not await self._store.post_pending(group_id)):
            await self._store.replies_sent(group_id, ALL_REPLIES)  # gone, or its message will never be posted
            return True
        if group.message_ts is None:  # to be posted soon: the replies follow it
            await self._store.retry_replies_at(group_id, self._clock() + RETRY_AFTER)
            return True
        limited_until = self._limited_until(group.channel)
        if limited_until is not None:
            await self._store.retry_replies_at(group_id, limited_until)
            return True
        queued = await self._store.queued_replies(group_id, ALL_REPLIES)
        shown, used = reply_lines(queued)
        if not used:
            await self._store.replies_sent(group_id, 0)
            return True
        attempt = await self._store.begin_reply(group_id, used)
        if not attempt.first:  # the same lines as the attempt that may have reached Slack
            shown, used = reply_lines(queued[: attempt.used])
        try:
            await self._poster.reply_once(
                group.message_channel or group.channel,
                group.message_ts,
                attempt.key,
                attempt=attempt,
                text="\n".join(shown),
            )
        except SlackApiError as error:
            if attempt.first and not maybe_applied(error):  # certainly not sent: a retry need not look for it
                await self._store.forget_reply_attempt(group_id)
            limited_until = self._note_rate_limit(group.channel, error)
            if limited_until is not None:
                await self._store.retry_replies_at(group_id, limited_until)
                return True
            log.warning("could not reply in the thread of alert %s: %s", group_id, error_code(error))
            if is_transient(error):
                return False
        await self._store.replies_sent(group_id, used)
        return True

    async def caught_up(self) -> bool:
        """Whether every entry accepted into the alert stream has been delivered and acknowledged (an idle check)."""
        stream = self._store.k("stream")
        newest = await self._store.redis.xrevrange(stream, count=1)
        if not newest:
            return True  # nothing accepted (or all of it trimmed away)
        try:
            groups = await self._store.redis.xinfo_groups(stream)
        except ResponseError:
            return False
        group = next((g for g in groups if _str(g["name"]) == CONSUMER_GROUP), None)
        if group is None:  # not created yet: the consumer is starting
            return False
        read_up_to = _stream_id(_str(group["last-delivered-id"]))
        return int(group["pending"]) == 0 and read_up_to >= _stream_id(_str(newest[0][0] or ""))

    def _lease_seconds(self) -> float:
        """How long a claimed post or update is ours before another process may take it over: longer than one
        Slack call can take with its retries, so a live process is never overtaken."""
        return max(POST_LEASE_SECONDS, 3 * self._slack_timeout)

    # -- actions ------------------------------------------------------------------------------------------

    async def acknowledge(
        self,
        group_id: str,
        user: str,
        *,
        via: str,
        name: str | None = None,
        details: dict[str, str] | None = None,
        also: Callable[[Pipe, AlertGroup], None] | None = None,
    ) -> AlertGroup:
        """Records an acknowledgement (kept forever in the ack stream) and shows it on the message. `name` is who
        acknowledged when they are not a Slack user (`user` is then an outside id), `details` go into the ack
        record, and `also` queues more in the same transaction."""
        now = self._clock()

        def change(group: AlertGroup) -> AlertGroup:
            if group.state == "resolved":
                raise UserFacingError(f"`{group.id}` is already resolved.")
            if group.acked_by is not None:
                raise UserFacingError(f"`{group.id}` was already acknowledged by {group.acked_by_text}.")
            acked = group.model_copy(
                update={"acked_by": user, "acked_at": now, "updated_at": now, "acked_via": via, "acked_name": name}
            )
            return escalation.acknowledged(acked, now, self.oncall.ack_reminder)

        def record(pipe: Pipe, group: AlertGroup) -> None:
            seconds = (now - group.created_at).total_seconds()
            last = group.pages[-1] if group.pages else None
            self._store.queue_ack(
                pipe,
                {
                    "group": group.id,
                    "fingerprints": ",".join(group.members),
                    "user": user,
                    "at": now.isoformat(),
                    "seconds_to_ack": f"{seconds:.3f}",
                    "via": via,
                    "title": group.title,
                    "escalation": group.escalation or "",
                    "step": str(last.step + 1 if last else 0),
                    "round": str(last.round + 1 if last else 0),
                    "pages": str(len(group.pages)),
                    "rotation": escalation.rotation_of(group, user),
                    "paged": ",".join(escalation.who_was_paged(group)),
                    "severity": group.severity,
                    **(details or {}),
                },
            )
            took = human_duration(now - group.created_at)
            if via == "pagerduty":
                note = f":eyes: Acknowledged in PagerDuty by {_named(user, name)} after {took}."
            else:
                note = f":eyes: <@{user}> acknowledged after {took}."
            self._store.queue_reply(pipe, group.id, note)
            self._queue_pages_closed(pipe, group, f":eyes: Acknowledged by {group.acked_by_text} after {took}.")
            if also is not None:
                also(pipe, group)

        _, after = await self._change(group_id, change, also=record)
        await self._audit.record(
            actor=user, action="alert.ack", result="ok", target=after.id, channel=after.channel, detail=via
        )
        await self.flush()
        return after

    async def unacknowledge(self, group_id: str, user: str) -> AlertGroup:
        """Takes an acknowledgement back (the ack stays in history)."""

        def change(group: AlertGroup) -> AlertGroup:
            if group.acked_by is None:
                raise UserFacingError(f"`{group.id}` is not acknowledged.")
            taken_back = group.model_copy(update={"acked_by": None, "acked_at": None, "updated_at": self._clock()})
            return self.restart_escalation(taken_back)

        def record(pipe: Pipe, group: AlertGroup) -> None:
            again = " Escalating again." if group.escalation_state == "paging" else ""
            self._store.queue_reply(
                pipe, group.id, f":leftwards_arrow_with_hook: <@{user}> took the acknowledgement back.{again}"
            )

        _, after = await self._change(group_id, change, also=record)
        await self._audit.record(actor=user, action="alert.unack", result="ok", target=after.id, channel=after.channel)
        await self.flush()
        return after

    async def resolve(
        self,
        group_id: str,
        user: str,
        *,
        via: str,
        name: str | None = None,
        also: Callable[[Pipe, AlertGroup], None] | None = None,
    ) -> AlertGroup:
        """Resolves a group by hand: every member is marked resolved by `user` (`name`: as for `acknowledge`)."""
        now = self._clock()

        def change(group: AlertGroup) -> AlertGroup:
            if group.state == "resolved":
                raise UserFacingError(f"`{group.id}` is already resolved.")
            members = {
                fp: m.model_copy(update={"status": "resolved", "ends_at": now}) for fp, m in group.members.items()
            }
            resolved = group.model_copy(
                update={
                    "members": members,
                    "state": "resolved",
                    "resolved_at": now,
                    "resolved_by": user,
                    "updated_at": now,
                    "resolved_via": via,
                    "resolved_name": name,
                }
            )
            return escalation.stopped(resolved)

        def record(pipe: Pipe, group: AlertGroup) -> None:
            took = human_duration(now - group.created_at)
            if via == "pagerduty":
                note = f":white_check_mark: Resolved in PagerDuty by {_named(user, name)} after {took}."
            else:
                note = f":white_check_mark: <@{user}> resolved it after {took}."
            self._store.queue_reply(pipe, group.id, note)
            self._queue_pages_closed(
                pipe, group, f":white_check_mark: Resolved by {group.resolved_by_text} after {took}."
            )
            if also is not None:
                also(pipe, group)

        _, after = await self._change(group_id, change, also=record)
        await self._store.count(now, "resolved")
        await self._audit.record(
            actor=user, action="alert.resolve", result="ok", target=after.id, channel=after.channel, detail=via
        )
        await self.flush()
        return after

    def restart_escalation(self, group: AlertGroup) -> AlertGroup:
        """`group` walking its escalation policy again from the first step, now (unchanged without a policy)."""
        policy = self.oncall.escalation_policies.get(group.escalation or "")
        if policy is None:
            return escalation.stopped(group)
        return escalation.start(group, policy, self._clock())

    async def silence(
        self,
        matchers: Sequence[Matcher],
        duration: timedelta,
        user: str,
        reason: str,
        *,
        group: str | None = None,
    ) -> str:
        """Stores a silence (made from alert `group`'s message, if given); matching alerts are counted but not
        posted until it expires."""
        if not matchers:
            raise UserFacingError("A silence needs at least one matcher, e.g. `service=web`.")
        now = self._clock()
        silence_id = "s-" + secrets.token_hex(4)
        record: dict[str, object] = {
            "id": silence_id,
            "matchers": [str(m) for m in matchers],
            "created_by": user,
            "reason": reason,
            "created_at": now.isoformat(),
            "expires_at": (now + duration).isoformat(),
            "announced": False,
        }
        if group is not None:
            record["group"] = group
        await self._store.save_silence(silence_id, record)
        await self._audit.record(
            actor=user,
            action="alert.silence",
            result="ok",
            target=silence_id,
            detail=f"{' '.join(str(m) for m in matchers)} for {human_duration(duration)}: {reason}",
        )
        return silence_id

    async def group_matchers(self, group_id: str) -> list[Matcher]:
        """What a group's alerts share: their group_by labels (or the single alert's labels) as matchers."""
        group = await self._store.get_group(group_id)
        if group is None:
            raise UserFacingError(f"There is no alert `{external_text(group_id)}`.")
        first = next(iter(group.members.values()))
        labels = self.config.group_by or tuple(first.labels)
        return [Matcher(label, "=", first.labels.get(label, "")) for label in labels if label in first.labels]

    async def silence_group(
        self,
        group_id: str,
        duration: timedelta,
        user: str,
        *,
        matchers: Sequence[Matcher] | None = None,
        reason: str | None = None,
    ) -> str:
        """Silences what a group's alerts share (or `matchers`), shows the silence on its message (who, until
        when, an Unsilence button) and says so in its thread."""
        group = await self._store.get_group(group_id)
        if group is None:
            raise UserFacingError(f"There is no alert `{external_text(group_id)}`.")
        matchers = list(matchers) if matchers is not None else await self.group_matchers(group_id)
        silence_id = await self.silence(matchers, duration, user, reason or f"from alert {group.id}", group=group.id)
        until = self._clock() + duration
        _, after = await self._change(
            group_id,
            lambda g: g.model_copy(
                update={
                    "silenced_by": user,
                    "silence_id": silence_id,
                    "silenced_until": until,
                    "updated_at": self._clock(),
                }
            ),
        )
        matched = " ".join(f"`{external_text(str(m))}`" for m in matchers)
        why = f": {external_text(reason)}" if reason else ""
        await self.thread_reply(
            after, f":no_bell: <@{user}> silenced {matched} for {human_duration(duration)} (`{silence_id}`){why}."
        )
        await self.flush()
        return silence_id

    async def unsilence(self, silence_id: str, user: str) -> bool:
        """Removes a silence before it ends (False if there is none) and takes it off the message it was made from."""
        silence = (await self._store.silences()).get(silence_id)
        if not await self._store.delete_silence(silence_id):
            return False
        await self._audit.record(actor=user, action="alert.unsilence", result="ok", target=silence_id)
        group = await self._forget_silence(silence or {}, silence_id)
        if group is not None:
            await self.thread_reply(
                group, f":bell: <@{user}> removed the silence `{silence_id}`; these alerts are posted again."
            )
            await self.flush()
        return True

    async def _forget_silence(self, silence: dict[str, object], silence_id: str) -> AlertGroup | None:
        """Takes an ended silence off the message it was made from (which the flusher then updates)."""
        group_id = str(silence.get("group") or "")
        if not group_id:
            return None

        def change(group: AlertGroup) -> AlertGroup:
            if group.silence_id != silence_id:  # silenced again since: that silence stays shown
                return group
            return group.model_copy(
                update={"silenced_by": None, "silence_id": None, "silenced_until": None, "updated_at": self._clock()}
            )

        try:
            _, after = await self._store.update_group(group_id, change)
        except KeyError:
            return None
        return after

    async def _live_silences(self) -> list[tuple[str, list[Matcher], datetime]]:
        found = []
        for silence_id, silence in (await self._store.silences()).items():
            try:
                matchers = [parse_matcher(m) for m in silence_matchers(silence)]
                found.append((silence_id, matchers, datetime.fromisoformat(str(silence["expires_at"]))))
            except (ValueError, KeyError):
                continue
        return found

    async def tick(self) -> None:
        """Announces silences that expired, once, and forgets them."""
        now = self._clock()
        for silence_id, silence in (await self._store.silences()).items():
            if datetime.fromisoformat(str(silence["expires_at"])) > now:
                continue
            if await self._store.delete_silence(silence_id):
                await self._forget_silence(silence, silence_id)
                matchers = " ".join(f"`{external_text(m)}`" for m in silence_matchers(silence))
                await self._post(
                    self.config.default_channel,
                    text=f":bell: Silence `{silence_id}` ({matchers}) by <@{silence['created_by']}> expired; "
                    "those alerts are posted again.",
                )

    async def _change(
        self,
        group_id: str,
        change: Callable[[AlertGroup], AlertGroup],
        also: Callable[[Pipe, AlertGroup], None] | None = None,
    ) -> tuple[AlertGroup, AlertGroup]:
        try:
            return await self._store.update_group(group_id, change, also=also)
        except KeyError:
            raise UserFacingError(f"There is no alert `{external_text(group_id)}`.") from None

    # -- Slack --------------------------------------------------------------------------------------------

    async def _post(self, channel: str, **message: object) -> dict[str, str]:
        return await post_message(self._slack, channel, **message)

    def _queue_pages_closed(self, pipe: Pipe, group: AlertGroup, outcome: str) -> None:
        """Queues, in the change's own transaction, the closing of the group's page DMs (if it paged anyone)."""
        if any(page.dms for page in group.pages):
            self._store.queue_pages_closed(pipe, group.id, outcome)

    async def _close_pages(self, group_id: str) -> bool:
        """Replaces the buttons of every page DM of a group with the outcome queued for it (`_queue_pages_closed`),
        never waiting out a 429 (the closing is due again when Retry-After ends). An update is harmless to repeat,
        so a retry updates every DM again. False if Slack failed in a way worth retrying."""
        outcome = await self._store.page_outcome(group_id)
        group = await self._store.get_group(group_id)
        if outcome is None or group is None:
            await self._store.pages_closed(group_id, outcome or "")
            return True
        text, blocks = page_closed(group, outcome)
        for page in group.pages:
            for channel, ts in page.dms.items():
                limited_until = self._limited_until(channel)
                if limited_until is not None:
                    await self._store.retry_page_closing_at(group_id, limited_until)
                    return True
                try:
                    await self._messages.chat_update(channel=channel, ts=ts, text=text, blocks=blocks)
                except SlackApiError as error:
                    limited_until = self._note_rate_limit(channel, error)
                    if limited_until is not None:
                        await self._store.retry_page_closing_at(group_id, limited_until)
                        return True
                    log.warning("could not update the page of %s in %s: %s", group_id, channel, error_code(error))
                    if is_transient(error):
                        return False
        await self._store.pages_closed(group_id, outcome)
        return True

    # -- reading --------------------------------------------------------------------------------------------

    async def get(self, group_id: str) -> AlertGroup | None:
        """A group by id, or None when there is no such group."""
        return await self._store.get_group(group_id)

    async def groups(self, ids: Sequence[str]) -> list[AlertGroup]:
        """Several groups by id (missing ones left out)."""
        return await self._store.groups(ids)

    async def firing(self) -> list[AlertGroup]:
        """The groups with firing members."""
        return await self._store.groups(await self._store.firing_ids())

    async def acks(self) -> list[dict[str, str]]:
        """Acknowledgements, newest first."""
        return await self._store.acks()

    async def silences(self) -> dict[str, dict[str, object]]:
        """Every stored silence by id (expired ones too, until the tick removes them)."""
        return await self._store.silences()

    async def figures(self, days: Sequence[datetime], since: datetime) -> AlertFigures:
        """The counters summed over `days`, with the acknowledgements since `since` and their mean time to
        acknowledge: from the days' counters once they hold every ack, else from the ack stream as before."""
        totals = await self._store.stats(days)
        if await self._store.ack_counters_ready():  # a few small hashes, however long the history
            acked, millis = totals.get("acks", 0), totals.get("ack_ms", 0)
            return AlertFigures(totals, acked, timedelta(milliseconds=millis / acked) if acked else None)
        acks = [a for a in await self._store.acks() if datetime.fromisoformat(a["at"]) >= since]
        to_ack = timedelta(seconds=mean(float(a["seconds_to_ack"]) for a in acks)) if acks else None
        return AlertFigures(totals, len(acks), to_ack)

    async def open_page(self, group: AlertGroup, *, post_at: datetime) -> bool:
        """Stores a new group (a page raised by another domain) due to be posted at `post_at`; False if one with
        its key is open already."""
        return await self._store.create_group(group, post_at=post_at)

    async def thread_reply(self, group: AlertGroup, text: str) -> None:
        """Queues a reply in the thread of the group's message; the flusher sends it once the message is posted,
        never waiting on Slack's rate limit in the caller (a page, a button, the escalation tick). A note told after
        its change: if Redis fails in between, the note is logged as lost and the caller goes on."""
        try:
            async with self._store.redis.pipeline(transaction=True) as pipe:
                self._store.queue_reply(pipe, group.id, text)
                await pipe.execute()
        except (RedisError, OSError) as error:
            log.warning("could not queue a reply in the thread of alert %s: %s", group.id, _describe(error))
            return
        self.posts_due.set()


def _events(entry_id: str, alerts: Sequence[Alert]) -> list[tuple[str, Alert]]:
    """An entry's alerts as events, each with its id (the entry's id and the alert's index: see membership.py)."""
    return [(f"{entry_id}-{index}", alert) for index, alert in enumerate(alerts)]


def reply_lines(queued: Sequence[str]) -> tuple[list[str], int]:
    """The lines of one thread reply made of a group's queued replies (oldest first, each marked countable or not),
    and how many queued replies it uses. Every note is shown, at most NOTES_PER_REPLY of them a reply (the rest wait
    for the next); of the countable lines (alerts resolved) the first REPLY_LINES are shown and the rest counted."""
    shown: list[str] = []
    notes = countable = used = 0
    for line in queued:
        kind, text = line[:1], line[1:]
        if kind == COUNTABLE:
            countable += 1
            if countable <= REPLY_LINES:
                shown.append(text)
        else:
            if notes == NOTES_PER_REPLY:
                break
            notes += 1
            shown.append(text if kind == NOTE else line)
        used += 1
    if countable > REPLY_LINES:
        shown.append(f"…and {countable - REPLY_LINES} more resolved (the message above shows each alert).")
    return shown, used


def _named(user: str, name: str | None) -> str:
    """A Slack mention for a Slack user, else the outside name (escaped)."""
    if name:
        return external_text(name)
    return f"<@{user}>"


async def _first_of(*events: asyncio.Event) -> None:
    """Returns when any of `events` is set."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _str(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _stream_id(value: str) -> tuple[int, int]:
    milliseconds, _, sequence = value.partition("-")
    return int(milliseconds), int(sequence or 0)


def _no_group(error: Exception) -> bool:
    """Redis answered that the stream or its consumer group does not exist (it restarted empty)."""
    return isinstance(error, ResponseError) and "NOGROUP" in str(error)


def _infrastructure(error: Exception) -> bool:
    """A failure of Redis or of the network, not of the alert: never counted towards dead-lettering."""
    return isinstance(error, RedisError | OSError | StoreUnavailable | TimeoutError | SlackApiError)


def _describe(error: Exception) -> str:
    cause = error.__cause__ or error
    return f"{type(cause).__name__}: {cause}"
