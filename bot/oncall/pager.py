"""Paging and escalation: the tick that claims due deadlines (pages and acknowledgement reminders) from Redis and
acts on them.

A deadline is claimed with a lease (its score pushed ahead by the scheduler's lease time), so one process handles
it; the page is sent, then recorded on the group together with the next deadline in one transaction. A page whose
DM or channel post Slack did not take (5xx, timeout, an error page) is not recorded: the deadline comes due again
when the lease runs out, and the retry first looks for the DMs it may already have sent (each carries the page's
key in its metadata), so a page is sent at least once and, where the process survives, once per person. A
deadline whose group moved on (acknowledged, resolved, restarted) is stale and dropped. A late page says why.

The notes a page or a reminder leaves in the alert's thread ("Paging …", "Reminded …") are queued in the transaction
that records it, so a process killed between sending and recording leaves no note, and the retry leaves exactly one.
An acknowledgement reminder's DM carries its deadline's key too, and a retry looks for it before sending another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts import escalation
from bot.alerts.escalation import PAGE, Deadline, Slot
from bot.alerts.model import AlertGroup, Page
from bot.alerts.pipeline import AlertPipeline
from bot.alerts.store import AlertStore, Attempt
from bot.oncall.config import EscalationPolicy, EscalationStep, PagerDutyTarget
from bot.oncall.pagerduty import PagerDutyOutbox
from bot.oncall.render import page_message
from bot.oncall.service import OncallService
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError
from bot.platform.slack_client import error_code, is_transient
from bot.platform.slack_post import OncePoster
from bot.platform.store import Pipe
from bot.text.blocks import channel_link, external_text
from bot.text.humanize import duration as human_duration

log = logging.getLogger(__name__)

LATE_NOTE_AFTER = timedelta(seconds=30)
# Slack errors after which paging that person can never work (the page goes on to the others, and says so).
_UNPAGEABLE = frozenset(
    {
        "user_not_found",
        "cannot_dm_bot",
        "user_disabled",
        "account_inactive",
        "channel_not_found",
        "is_archived",
        "restricted_action",
        "not_in_channel",
    }
)


class PageNotSent(Exception):
    """Slack did not take a page (it failed in a way a later attempt can get past); the deadline comes due again."""


class _Stale(Exception):
    """The group moved on since the deadline was claimed."""


@dataclass
class _PageAttempt:
    """One attempt at one escalation step's page: what it pages for, how the thread names it, and the notes it leaves
    there (queued in the transaction that records the page)."""

    group: AlertGroup
    policy: EscalationPolicy
    step: EscalationStep
    due: Slot
    now: datetime
    member: str  # the deadline's key: also the key of the DMs it sends, which a retry looks for
    attempt: Attempt
    notes: list[str] = field(default_factory=list)

    @property
    def step_text(self) -> str:
        rounds = f", round {self.due.round + 1} of {self.policy.repeat + 1}" if self.policy.repeat else ""
        return f"step {self.due.step + 1} of {len(self.policy.steps)}{rounds} of `{self.group.escalation}`"

    @property
    def late_note(self) -> str:
        return _late_note(self.now - self.due.due, retried=not self.attempt.first)


class Pager:
    """Sends pages and reminders when their deadlines come due."""

    def __init__(
        self,
        *,
        oncall: OncallService,
        alerts: AlertPipeline,
        store: AlertStore,
        slack: AsyncWebClient,
        audit: AuditLog,
        clock: Callable[[], datetime],
        claim_lease: timedelta = timedelta(seconds=15),
        outbox: PagerDutyOutbox | None = None,
    ) -> None:
        self._oncall = oncall
        self._alerts = alerts
        self._store = store  # the alert groups' store: paging moves their escalation on
        self._slack = slack
        self._audit = audit
        self._clock = clock
        self._claim_lease = claim_lease
        self._poster = OncePoster(slack, event_type="chatops_page")
        self._outbox = outbox

    async def tick(self) -> int:
        """Handles every deadline due now; returns how many were handled (failures come due again later)."""
        handled = 0
        lease = self._claim_lease.total_seconds()
        for member in await self._store.claim_deadlines(self._clock(), lease_seconds=lease):
            try:
                await self._handle(member)
                handled += 1
            except PageNotSent as failure:
                log.warning("deadline %s: %s; it comes due again in %ss", member, failure, lease)
            except Exception:
                log.exception("deadline %s failed; it comes due again in %ss", member, lease)
        return handled

    async def _handle(self, member: str) -> None:
        deadline = Deadline.parse(member)
        group = await self._store.get_group(deadline.group_id) if deadline else None
        if deadline is None or group is None or group.pending != member or group.state != "firing":
            await self._store.drop_deadline(member)
            return
        if deadline.kind == PAGE:
            await self._page(deadline, group)
        else:
            await self._remind(deadline, group)

    # -- pages --------------------------------------------------------------------------------------------

    async def _page(self, deadline: Deadline, group: AlertGroup) -> None:
        policy = self._alerts.oncall.escalation_policies.get(group.escalation or "")
        due = (
            escalation.slot(policy, group.escalation_started, deadline.number)
            if policy and group.escalation_started
            else None
        )
        if policy is None or due is None:
            log.warning(
                "alert %s: escalation policy %r is gone or walked to its end; not paging", group.id, group.escalation
            )
            await self._record(deadline, lambda g: escalation.stopped(g))
            return
        step = policy.steps[due.step]
        member = str(Deadline(PAGE, group.id, group.escalation_epoch, due.number))
        attempt = await self._store.begin_attempt("paging", member)
        paging = _PageAttempt(group, policy, step, due, self._clock(), member, attempt)
        notes = paging.notes
        trigger: Callable[[Pipe, AlertGroup], None] | None = None
        if step.target_kind == "pagerduty":
            page, trigger = await self._trigger(paging)
        else:
            page = await self._send(paging)

        def also(pipe: Pipe, after: AlertGroup) -> None:
            if trigger is not None:
                trigger(pipe, after)
            last: list[str] = []  # a new list each call: a transaction retried on WATCH calls this again
            if after.escalation_state == "exhausted":
                rounds = f" after {policy.repeat + 1} rounds" if policy.repeat else ""
                last.append(
                    f":warning: That was the last step of `{group.escalation}`{rounds}; nobody else will be paged."
                )
            self._queue_notes(pipe, after, [*notes, *last])

        await self._record(deadline, lambda g: escalation.paged(g, policy, page), also=also, notes=notes)
        if trigger is not None and self._outbox is not None:
            self._outbox.kick()

    async def _send(self, paging: _PageAttempt) -> Page:
        """Sends one page: DMs to the people the step names, or a post in its channel; adds to its notes what the
        thread should say. Raises PageNotSent when Slack did not take one of them (nothing is recorded; the retry
        finds what this attempt did send)."""
        group, step, due, now, member, attempt = (
            paging.group,
            paging.step,
            paging.due,
            paging.now,
            paging.member,
            paging.attempt,
        )
        step_text, late_note, notes = paging.step_text, paging.late_note, paging.notes
        notify = step.notify
        assert isinstance(notify, str), "_page hands PagerDuty steps to _trigger"
        rotation = notify if step.target_kind == "rotation" else None
        targets: list[str] = []
        channel = None
        dms: dict[str, str] = {}
        unreachable: list[str] = []
        mention = step.mention_markup()
        if rotation is not None:
            try:
                current = await self._oncall.now(rotation, now)
                targets.append(current.member)
            except UserFacingError as error:
                notes.append(f":warning: Cannot page `{rotation}`: {external_text(error.message)}{late_note}")
        elif step.target_kind == "user":
            targets.append(notify)
        else:
            channel = notify
        reason = f"on call for {rotation}" if rotation else "named in the escalation policy"
        for user in targets:
            text, blocks = page_message(group, step_text=step_text, reason=reason, now=now)
            try:
                posted = await self._poster.direct_message_once(
                    user,
                    f"{member}|{user}",
                    attempt=attempt,
                    text=text,
                    blocks=blocks,
                )
                dms[posted["channel"]] = posted["ts"]
            except SlackApiError as error:
                self._unsent(group, user, error, unreachable)
        shown = channel_link(channel or "")
        if channel is not None:
            text, blocks = page_message(
                group, step_text=step_text, reason="escalation reached this channel", now=now, mention=mention
            )
            try:
                posted = await self._poster.post_once(
                    channel,
                    f"{member}|{channel}",
                    attempt=attempt,
                    text=text,
                    blocks=blocks,
                )
                dms[posted["channel"]] = posted["ts"]
                shown = channel_link(channel, posted["channel"])  # the ID Slack answered: a link, not "#name"
            except SlackApiError as error:
                self._unsent(group, channel, error, unreachable)
        who = " ".join(f"<@{user}>" for user in targets) or (shown if channel else "nobody")
        for_whom = f" ({rotation} on call)" if rotation and targets else ""
        extra = f" {mention}" if mention and channel is None else ""
        missing = f" Could not reach {', '.join(unreachable)}." if unreachable else ""
        notes.append(f":pager: Paging {who}{for_whom}{extra} — {step_text}.{late_note}{missing}")
        await self._audit.record(
            actor="chatops",
            action="alert.page",
            result="ok" if not unreachable else "partial",
            target=group.id,
            channel=group.channel,
            detail=f"{step_text}: {who}{late_note}{missing}",
        )
        return Page(
            number=due.number,
            round=due.round,
            step=due.step,
            due=due.due,
            at=now,
            rotation=rotation,
            targets=tuple(targets),
            channel=channel,
            dms=dms,
        )

    async def _trigger(self, paging: _PageAttempt) -> tuple[Page, Callable[[Pipe, AlertGroup], None] | None]:
        """A PagerDuty step: the page, and what queues its trigger event in the transaction that records it (the
        outbox sends it until PagerDuty takes it, so the page is as durable as the record); adds to its notes what
        the thread should say."""
        group, step, due, now, member = paging.group, paging.step, paging.due, paging.now, paging.member
        step_text, late_note, notes = paging.step_text, paging.late_note, paging.notes
        assert isinstance(step.notify, PagerDutyTarget)
        routing = step.notify.pagerduty
        page = Page(number=due.number, round=due.round, step=due.step, due=due.due, at=now, pagerduty=routing)
        outbox = self._outbox
        if outbox is None or outbox.pagerduty is None or not outbox.pagerduty.events.knows(routing):
            notes.append(
                f":warning: Cannot trigger PagerDuty `{routing}`: it is not"
                f" configured (integrations.pagerduty.routing_keys) — {step_text}."
                f"{late_note}"
            )
            return page, None
        permalink = await self._permalink(group)
        notes.append(f":pager: Triggering PagerDuty `{routing}` — {step_text}.{late_note}")
        await self._audit.record(
            actor="chatops",
            action="alert.page",
            result="ok",
            target=group.id,
            channel=group.channel,
            detail=f"{step_text}: PagerDuty {routing}{late_note}",
        )

        def also(pipe: Pipe, after: AlertGroup) -> None:
            outbox.queue_trigger(pipe, after, page=member, routing=routing, permalink=permalink)

        return page, also

    async def _permalink(self, group: AlertGroup) -> str | None:
        """The Slack link of the group's message, for PagerDuty's incident (None when Slack cannot say)."""
        if group.message_ts is None:
            return None
        try:
            found = await self._slack.chat_getPermalink(
                channel=group.message_channel or group.channel, message_ts=group.message_ts
            )
        except SlackApiError as error:
            log.warning("no permalink for alert %s: %s", group.id, error_code(error))
            return None
        return str(found.get("permalink") or "") or None

    @staticmethod
    def _unsent(group: AlertGroup, who: str, error: SlackApiError, unreachable: list[str]) -> None:
        """A page Slack refused: raises PageNotSent when a later attempt may get through, else notes the person
        or channel as unreachable (Slack refuses it for good: the page goes on to the others)."""
        code = error_code(error)
        if code in _UNPAGEABLE or not is_transient(error):
            log.error("cannot page %s for %s: %s", who, group.id, code)
            unreachable.append(f"`{who}` ({code})")
            return
        raise PageNotSent(f"Slack did not take the page to {who} ({code})")

    # -- reminders ----------------------------------------------------------------------------------------

    async def _remind(self, deadline: Deadline, group: AlertGroup) -> None:
        reminder = self._alerts.oncall.ack_reminder
        if reminder is None or group.acked_by is None or group.acked_at is None:
            await self._record(deadline, lambda g: escalation.stopped(g))
            return
        now = self._clock()
        since = human_duration(now - group.acked_at)
        if deadline.number >= 2 and self._alerts.oncall.reescalate_after_reminder:

            def take_back(g: AlertGroup) -> AlertGroup:
                withdrawn = g.model_copy(update={"acked_by": None, "acked_at": None, "updated_at": now})
                return self._alerts.restart_escalation(withdrawn)

            def withdrawn_note(pipe: Pipe, after: AlertGroup) -> None:
                again = " Escalating again." if after.escalation_state == "paging" else ""
                note = (
                    f":rotating_light: Still firing {since} after {group.acked_by_text} acknowledged;"
                    f" the acknowledgement is withdrawn.{again}"
                )
                self._queue_notes(pipe, after, [note])

            after = await self._record(deadline, take_back, also=withdrawn_note)
            if after is not None:
                await self._audit.record(
                    actor="chatops",
                    action="alert.unack",
                    result="ok",
                    target=group.id,
                    channel=group.channel,
                    detail=f"still firing {since} after the acknowledgement",
                )
                self._alerts.posts_due.set()
                await self._alerts.flush()
            return
        if group.acked_by.startswith("pagerduty:"):  # acknowledged in PagerDuty by someone Slack does not know
            note = f":alarm_clock: Still firing {since} after {group.acked_by_text} acknowledged."
            await self._record_with_notes(deadline, lambda g: escalation.reminded(g, now, reminder), [note])
            return
        then = "escalated again" if self._alerts.oncall.reescalate_after_reminder else "reminded again"
        await self._dm_once(
            deadline,
            group.acked_by,
            f":alarm_clock: `{group.id}` *{external_text(group.title)}* is still firing "
            f"{since} after you acknowledged it."
            f" Resolve it, or it will be {then}"
            f" in {human_duration(reminder)}.",
        )
        note = f":alarm_clock: Reminded <@{group.acked_by}>: still firing {since} after the acknowledgement."
        await self._record_with_notes(deadline, lambda g: escalation.reminded(g, now, reminder), [note])

    # -- helpers ------------------------------------------------------------------------------------------

    async def _record_with_notes(
        self, deadline: Deadline, change: Callable[[AlertGroup], AlertGroup], notes: list[str]
    ) -> AlertGroup | None:
        """`_record`, with `notes` queued for the thread in the same transaction."""
        return await self._record(
            deadline, change, also=lambda pipe, after: self._queue_notes(pipe, after, notes), notes=notes
        )

    def _queue_notes(self, pipe: Pipe, group: AlertGroup, notes: list[str]) -> None:
        """Queues `notes` on `pipe` for the group's thread (the flusher sends them once its message is posted)."""
        for note in notes:
            self._store.queue_reply(pipe, group.id, note)

    async def _record(
        self,
        deadline: Deadline,
        change: Callable[[AlertGroup], AlertGroup],
        also: Callable[[Pipe, AlertGroup], None] | None = None,
        *,
        notes: list[str] | None = None,
    ) -> AlertGroup | None:
        """Applies `change` if the group still waits for this very deadline (and queues `also` with it); the store
        moves the deadline index. `notes` (which `also` queues) are told anyway when the deadline turns out stale:
        what was sent happened, whatever the group did meanwhile."""
        member = str(deadline)

        def guarded(group: AlertGroup) -> AlertGroup:
            if group.pending != member:
                raise _Stale
            return change(group)

        def done(pipe: Pipe, after: AlertGroup) -> None:
            self._store.queue_attempt_done(pipe, "paging", member)
            if also is not None:
                also(pipe, after)

        try:
            _, after = await self._store.update_group(deadline.group_id, guarded, also=done)
        except (_Stale, KeyError):
            await self._store.drop_deadline(member)
            group = await self._store.get_group(deadline.group_id)
            for note in notes or ():
                if group is not None:
                    await self._alerts.thread_reply(group, note)
            return None
        if notes is not None:
            self._alerts.posts_due.set()
        return after

    async def _dm_once(self, deadline: Deadline, user: str, text: str) -> None:
        """DMs a reminder once per deadline: a retry after a kill first looks for the DM an earlier attempt sent.
        A DM Slack refuses is logged, not retried (the thread still says the reminder came due)."""
        member = str(deadline)
        attempt = await self._store.begin_attempt("paging", member)
        try:
            await self._poster.direct_message_once(user, f"{member}|{user}", attempt=attempt, text=text)
        except SlackApiError as error:
            log.warning("could not DM %s: %s", user, error_code(error))


def _late_note(late: timedelta, *, retried: bool) -> str:
    """Why a page goes out late, if it does."""
    if retried and late > timedelta(seconds=1):
        return (
            f" (paged {human_duration(late)} late: an earlier attempt did not complete: "
            "Slack failed or the process stopped)"
        )
    if late <= LATE_NOTE_AFTER:
        return ""
    return f" (paged {human_duration(late)} late: no chatops process was running the scheduler then)"
