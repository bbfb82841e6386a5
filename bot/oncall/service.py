"""The on-call service: who is on call (schedule plus overrides from Redis), overrides that are announced in the
hand-off channel, hand-off messages posted once per shift change, and acknowledgement history."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.alerts.model import AlertGroup
from bot.oncall import rotation as rotations
from bot.oncall.config import OncallSection
from bot.oncall.overrides import OverrideRecord, OverrideStore, new_override_id
from bot.oncall.rotation import RotationSpec, Shift
from bot.oncall.when import format_local
from bot.platform.audit import AuditLog
from bot.platform.errors import PermissionDenied, UserFacingError
from bot.platform.slack_post import post_message
from bot.platform.store import Store
from bot.text.blocks import Block, context, escape, header, section
from bot.text.humanize import duration as human_duration

log = logging.getLogger(__name__)

MAX_OVERRIDE = timedelta(days=90)
LATE_AFTER = timedelta(minutes=2)

# Records that the hand-off of shift ARGV[2] of rotation ARGV[1] is being posted, unless it (or a later one)
# already was: 0 = already done, 1 = first time for this shift, 2 = nothing recorded before.
_CLAIM_HANDOFF = """
local done = redis.call('HGET', KEYS[1], ARGV[1])
if done and tonumber(done) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if done then return 1 end
return 2
"""


@dataclass(frozen=True)
class OnCallNow:
    """One rotation right now: who, until when, through which override, and who comes next when."""

    rotation: str
    member: str
    until: datetime
    override: OverrideRecord | None
    next_member: str | None
    next_starts: datetime | None


OpenIncidents = Callable[[], Awaitable[Sequence[str]]]
FiringAlerts = Callable[[], Awaitable[Sequence[AlertGroup]]]  # the alert groups firing now (hand-off notes)


class OncallService:
    """Rotations, overrides and hand-offs; one per process, built by the composition root."""

    def __init__(
        self,
        *,
        config: OncallSection,
        store: Store,
        firing_alerts: FiringAlerts,
        slack: AsyncWebClient,
        audit: AuditLog,
        clock: Callable[[], datetime],
        open_incidents: OpenIncidents | None = None,
    ) -> None:
        self.config = config
        self._overrides = OverrideStore(store)
        self._firing_alerts = firing_alerts
        self._slack = slack
        self._audit = audit
        self._clock = clock
        self._open_incidents = open_incidents
        self._claim_handoff = store.redis.register_script(_CLAIM_HANDOFF)
        self._handoff_key = store.keys.oncall("handoff")
        self._store = store

    def spec(self, rotation: str) -> RotationSpec:
        """A rotation by name; UserFacingError naming the ones there are."""
        spec = self.config.specs.get(rotation)
        if spec is None:
            known = ", ".join(f"`{name}`" for name in self.config.specs) or "none are configured"
            raise UserFacingError(f"There is no rotation `{escape(rotation)}` (rotations: {known}).")
        return spec

    async def active_overrides(self) -> list[OverrideRecord]:
        """Overrides not cancelled, in creation order."""
        return [record for record in await self._overrides.all() if record.active]

    async def now(self, rotation: str, at: datetime | None = None) -> OnCallNow:
        """Who is on call for `rotation` at `at` (default now), with overrides applied."""
        return (await self.now_all([rotation], at))[0]

    async def now_all(self, names: Sequence[str] | None = None, at: datetime | None = None) -> list[OnCallNow]:
        """`now` for several rotations (every one by default), reading the overrides once."""
        at = at or self._clock()
        records = await self.active_overrides()
        by_id = {record.id: record for record in records}
        overrides = [record.as_override() for record in records]
        result = []
        for name in names if names is not None else list(self.config.specs):
            spec = self.spec(name)
            try:
                member, until, override_id = rotations.on_call(spec, at, overrides)
            except ValueError as error:
                raise UserFacingError(f"Nobody is on call for `{name}` yet: {error}.") from None
            following = rotations.upcoming(spec, until, until + timedelta(microseconds=1), overrides)
            nxt = following[0] if following else None
            result.append(
                OnCallNow(
                    name,
                    member,
                    until,
                    by_id.get(override_id or ""),
                    nxt.member if nxt else None,
                    nxt.starts if nxt else None,
                )
            )
        return result

    async def schedule(self, rotation: str, since: datetime, until: datetime) -> list[tuple[Shift, bool]]:
        """The shifts of `rotation` over [since, until) with overrides cut in, each with whether it is an
        override (someone other than the schedule's person)."""
        spec = self.spec(rotation)
        overrides = [record.as_override() for record in await self.active_overrides()]
        pieces = rotations.upcoming(spec, since, until, overrides)
        return [
            (piece, (scheduled := rotations.shift_at(spec, piece.starts)) is None or scheduled.member != piece.member)
            for piece in pieces
        ]

    # -- overrides ----------------------------------------------------------------------------------------

    async def add_override(
        self,
        rotation: str,
        member: str,
        starts: datetime,
        ends: datetime,
        *,
        reason: str,
        by: str,
    ) -> OverrideRecord:
        """Puts `member` on call for `rotation` over [starts, ends), records and announces it."""
        self.spec(rotation)
        now = self._clock()
        if ends <= starts:
            raise UserFacingError("An override must end after it starts.")
        if ends <= now:
            raise UserFacingError("That override would already be over.")
        if ends - starts > MAX_OVERRIDE:
            raise UserFacingError(
                f"An override lasts at most {MAX_OVERRIDE.days} days; change the rotation for longer."
            )
        record = OverrideRecord(
            id=new_override_id(),
            rotation=rotation,
            member=member,
            starts=starts,
            ends=ends,
            reason=reason,
            created_by=by,
            created_at=now,
        )
        await self._overrides.save(record)
        await self._audit.record(
            actor=by,
            action="oncall.override",
            result="ok",
            target=record.id,
            detail=f"{rotation}: {member} {starts.isoformat()}..{ends.isoformat()} {reason}".strip(),
        )
        when = "from now" if starts <= now else f"from {format_local(starts, self._zone(rotation))}"
        why = f" — {escape(reason)}" if reason else ""
        await self._announce(
            f":repeat: <@{member}> covers *{escape(rotation)}* {when} until {format_local(ends, self._zone(rotation))}"
            f" (override `{record.id}` by <@{by}>){why}"
        )
        return record

    async def cancel_override(self, override_id: str, by: str, *, may_cancel_any: bool) -> OverrideRecord:
        """Cancels an override (kept, marked cancelled); its creator, the person covering or an admin may."""
        record = await self._overrides.get(override_id)
        if record is None:
            raise UserFacingError(f"There is no override `{escape(override_id)}`. See `/oncall overrides`.")
        if not record.active:
            raise UserFacingError(f"Override `{record.id}` was already cancelled by <@{record.cancelled_by}>.")
        if not may_cancel_any and by not in (record.created_by, record.member):
            await self._audit.record(actor=by, action="oncall.override_cancel", result="denied", target=record.id)
            raise PermissionDenied(
                f"Only <@{record.created_by}>, <@{record.member}> or an admin can cancel `{record.id}`.",
                action="cancel overrides",
                role="admins",
            )
        cancelled = record.model_copy(update={"cancelled_by": by, "cancelled_at": self._clock()})
        await self._overrides.save(cancelled)
        await self._audit.record(actor=by, action="oncall.override_cancel", result="ok", target=record.id)
        current = await self.now(record.rotation)
        await self._announce(
            f":leftwards_arrow_with_hook: <@{by}> cancelled override `{record.id}` "
            f"(<@{record.member}> on *{escape(record.rotation)}*);"
            f" on call now: <@{current.member}>."
        )
        return cancelled

    async def prune_overrides(self) -> int:
        """Forgets overrides over (or cancelled) for a month; returns how many."""
        return await self._overrides.prune(self._clock())

    # -- hand-offs ----------------------------------------------------------------------------------------

    async def handoff(self, rotation: str, *, note: str | None = None) -> bool:
        """Posts the hand-off of `rotation`'s current shift, once across all processes; False if it was posted
        already. A shift that started long ago and was never recorded (first start) is recorded silently."""
        spec = self.spec(rotation)
        now = self._clock()
        shift = rotations.shift_at(spec, now)
        if shift is None:
            return False
        claimed = int(
            await self._store.call(
                "handoff_claim", self._claim_handoff(keys=[self._handoff_key], args=[rotation, shift.index])
            )
        )
        late = now - shift.starts
        if claimed == 0 or (claimed == 2 and late > LATE_AFTER and note is None):
            return False
        if late > LATE_AFTER and note is None:
            note = f"posted {human_duration(late)} late: no chatops process was running the scheduler at the hand-off"
        await self._post_handoff(spec, shift, note)
        return True

    async def _post_handoff(self, spec: RotationSpec, shift: Shift, note: str | None) -> None:
        records = await self.active_overrides()
        overrides = [record.as_override() for record in records]
        incoming, until, override_id = rotations.on_call(spec, shift.starts, overrides)
        outgoing = None
        if shift.index > 0:
            outgoing, _, _ = rotations.on_call(spec, shift.starts - timedelta(microseconds=1), overrides)
        zone = self._zone(spec.name)
        via = f" (override `{override_id}`)" if override_id else ""
        swap = f"<@{outgoing}> → <@{incoming}>" if outgoing and outgoing != incoming else f"<@{incoming}> stays on"
        lines = [
            f":busts_in_silhouette: *{escape(spec.name)}* hand-off: {swap}{via}, "
            f"on call until {format_local(until, zone)}."
        ]
        firing = await self._firing_alerts()
        open_alerts = [g for g in firing if g.acked_by is None]
        acked = [g for g in firing if g.acked_by is not None]
        incidents = list(await self._open_incidents()) if self._open_incidents is not None else []
        blocks: list[Block] = [header(f"On-call hand-off: {spec.name}"), section(lines[0])]
        blocks.append(section(_alert_list("Open alerts", open_alerts, self._clock())))
        blocks.append(section(_alert_list("Acknowledged, still firing", acked, self._clock())))
        blocks.append(
            section(f"*Open incidents ({len(incidents)})*\n" + ("\n".join(incidents[:10]) if incidents else "none"))
        )
        if note:
            blocks.append(context(f":hourglass: {escape(note)}"))
        text = (
            lines[0]
            + f" {len(open_alerts)} open alerts, {len(acked)} acknowledged and firing, {len(incidents)} open incidents."
        )
        try:
            await post_message(self._slack, self.config.handoff_channel, text=text, blocks=blocks)
        except SlackApiError as error:
            log.error(
                "could not post the %s hand-off to %s: %s",
                spec.name,
                self.config.handoff_channel,
                error.response.get("error"),
            )
            raise

    # -- helpers ------------------------------------------------------------------------------------------

    def _zone(self, rotation: str) -> ZoneInfo:
        return ZoneInfo(self.spec(rotation).timezone)

    async def _announce(self, text: str) -> None:
        try:
            await post_message(self._slack, self.config.handoff_channel, text=text)
        except SlackApiError as error:
            log.warning("could not announce in %s: %s", self.config.handoff_channel, error.response.get("error"))


def _alert_list(title: str, groups: Sequence[AlertGroup], now: datetime) -> str:
    if not groups:
        return f"*{title} (0)*\nnone"
    lines = []
    for group in sorted(groups, key=lambda g: g.created_at)[:10]:
        who = f", acked by <@{group.acked_by}>" if group.acked_by else ""
        lines.append(
            f"`{group.id}` {escape(group.title)} — {group.severity}, for {human_duration(now - group.created_at)}{who}"
        )
    more = f"\n… and {len(groups) - 10} more" if len(groups) > 10 else ""
    return f"*{title} ({len(groups)})*\n" + "\n".join(lines) + more
