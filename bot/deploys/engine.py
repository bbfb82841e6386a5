"""The deploy engine: turns a request into a recorded deploy, posts it as one Slack message, collects approvals,
takes the run lock, walks the canary steps through the provider, the health gate and the metric gates (baking each
step), rolls back automatically when a gate fails, and recovers deploys a dead process left behind. State lives in
Redis, never only in memory."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import aiohttp
from slack_sdk.errors import SlackApiError
from slack_sdk.web.async_client import AsyncWebClient

from bot.deploys.config import DeploysSection, EnvironmentConfig, ServiceConfig
from bot.deploys.figures import Figures, calendar_window, compute_figures
from bot.deploys.model import (
    AnalysisView,
    CheckLine,
    Decision,
    DeployRecord,
    DeployState,
    Holds,
    IllegalTransition,
    StepProcesses,
    StepProgress,
    new_deploy_id,
    recovery_action,
)
from bot.deploys.policy import (
    active_freeze,
    blocking_hold,
    check_approval,
    rollback_target,
    version_problem,
)
from bot.deploys.render import deploy_message, failure_advice, health_line, title
from bot.deploys.store import FIGURES_LOOKBACK, DeployStore, LockInfo
from bot.platform.audit import AuditLog
from bot.platform.errors import UserFacingError, new_ref
from bot.platform.slack_post import post_message
from bot.platform.tasks import BackgroundTasks
from bot.text.humanize import duration as human_duration
from integrations.deploy.base import (
    Deployer,
    DeployStep,
    Emit,
    PromotingDeployer,
    RunReportingDeployer,
    StepResult,
)
from integrations.deploy.command import (
    LocalRun,
    SupervisedDeployer,
    group_alive,
    run_groups,
    stop_group,
    this_host,
)
from integrations.deploy.github_commits import CommitLookupError, commit_time
from integrations.deploy.registry import build_deployer
from integrations.health.analysis import (
    AnalysisProgress,
    AnalysisResult,
    AnalysisSettings,
    run_analysis,
)
from integrations.health.base import HealthCheck
from integrations.health.http import ProbeResult, health_gate
from integrations.health.registry import build_check

log = logging.getLogger(__name__)

STUCK_REQUEST_AFTER = timedelta(seconds=30)
_REAPED_WITHIN = 5.0  # seconds for init to reap the zombies of a supervisor that was killed


@dataclass(frozen=True)
class DeployRequest:
    """What someone asked for, after the command layer parsed it and checked their role."""

    kind: Literal["deploy", "rollback"]
    service: str
    environment: str
    version: str | None
    reason: str
    force: bool
    user: str
    channel: str


class _CannotResume(Exception):
    """The provider cannot follow a run it started before a restart."""


class _Unchanged(Exception):
    """A click that changes nothing (a second approval by the same person)."""


class DeployEngine:
    """Runs deploys and rollbacks; one per process, built by the composition root."""

    def __init__(
        self,
        services: Mapping[str, ServiceConfig],
        settings: DeploysSection,
        *,
        announce_channel: str | None,
        store: DeployStore,
        slack: AsyncWebClient,
        http: aiohttp.ClientSession,
        audit: AuditLog,
        tasks: BackgroundTasks,
        clock: Callable[[], datetime],
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.services = services  # the `services:` section, read-only: commands list and check names against it
        self._settings = settings
        self._announce_channel = announce_channel
        self._store = store
        self._slack = slack
        self._http = http
        self._audit = audit
        self._tasks = tasks
        self._clock = clock
        self._environ = dict(os.environ if environ is None else environ)
        self._deployers: dict[tuple[str, str], Deployer] = {}
        self._checks: dict[tuple[str, str], list[HealthCheck]] = {}
        self._running: set[str] = set()
        self._ttl = settings.lock_ttl

    # -- lookups ------------------------------------------------------------------------------------------

    def environment(self, service: str, environment: str) -> tuple[ServiceConfig, EnvironmentConfig]:
        """The configuration of a service and environment; a refusal naming the known ones otherwise."""
        svc = self.services.get(service)
        if svc is None:
            known = ", ".join(f"`{name}`" for name in self.services) or "none are configured"
            raise UserFacingError(f"There is no service `{service}`. Services: {known}.")
        env = svc.environments.get(environment)
        if env is None:
            known = ", ".join(f"`{name}`" for name in svc.environments)
            raise UserFacingError(f"`{service}` has no environment `{environment}`. Environments: {known}.")
        return svc, env

    def _deployer(self, service: str, environment: str) -> Deployer:
        key = (service, environment)
        if key not in self._deployers:
            _, env = self.environment(service, environment)
            self._deployers[key] = build_deployer(env.deployer, environ=self._environ, http=self._http)
        return self._deployers[key]

    def _health_checks(self, service: str, environment: str) -> list[HealthCheck]:
        """The environment's metric checks, built once (their clients live as long as the engine)."""
        key = (service, environment)
        if key not in self._checks:
            _, env = self.environment(service, environment)
            assert env.analysis is not None
            self._checks[key] = [
                build_check(metric, environ=self._environ, http=self._http) for metric in env.analysis.metrics
            ]
        return self._checks[key]

    # -- requests -----------------------------------------------------------------------------------------

    async def request(self, req: DeployRequest) -> DeployRecord:
        """Checks policy and records the deploy; the Slack message and the run continue in the background."""
        svc, env = self.environment(req.service, req.environment)
        now = self._clock()
        current = await self._store.current_version(req.service, req.environment)
        version = req.version
        if req.kind == "rollback" and version is None:
            history = await self._store.history(req.service, req.environment, [], 200)
            version = rollback_target(history, current)
            if version is None:
                raise UserFacingError(
                    f"There is no earlier successful version of `{req.service}` in `{req.environment}` "
                    "to roll back to. "
                    f"Name one: `/rollback {req.service} {req.environment} to <version>`."
                )
        assert version is not None
        problem = version_problem(env, version)
        if problem:
            raise UserFacingError(problem)
        if req.kind == "rollback" and version == current:
            raise UserFacingError(f"`{req.service}` is already at `{version}` in `{req.environment}`.")
        freeze = active_freeze(env.freeze, now)
        hold = blocking_hold(await self._store.holds(now), req.service, req.environment)
        if (freeze or hold) and not req.force:
            if freeze:
                until = f" until {freeze.until:%a %H:%M}Z" if freeze.until else ""
                raise UserFacingError(
                    f"`{req.environment}` is frozen{until}: {freeze.window.reason}. An admin can add `--force`."
                )
            assert hold is not None
            until = f" until {hold.until:%a %H:%M}Z" if hold.until else ""
            raise UserFacingError(
                f"`{req.environment}` is locked by <@{hold.holder}> since {hold.since:%H:%M}Z{until}: {hold.reason}. "
                f"Ask them, or `/deploy unlock {req.environment}{' ' + req.service if hold.deploy_id else ''}`."
            )
        for other in await self._store.active():
            if other.service == req.service and other.environment == req.environment:
                raise UserFacingError(
                    f"`{other.id}` ({title(other)}, {other.state.value.replace('_', ' ')}) by <@{other.requested_by}> "
                    f"since {other.created_at:%H:%M}Z is already in progress. "
                    "One deploy at a time per service and environment."
                )
        running = await self._live_lock(req.service, req.environment)
        if running is not None:
            raise UserFacingError(
                f"<@{running.holder}> holds the deploy lock of `{req.service}` in `{req.environment}` "
                f"since {running.since:%H:%M}Z: {running.reason}."
            )
        approval = env.approval if req.kind == "deploy" else env.rollback_policy()
        record = DeployRecord(
            id=new_deploy_id(),
            kind=req.kind,
            service=req.service,
            environment=req.environment,
            version=version,
            previous_version=current,
            requested_by=req.user,
            reason=req.reason,
            forced=req.force and bool(freeze or hold),
            state=DeployState.REQUESTED,
            created_at=now,
            updated_at=now,
            required_approvals=approval.required if approval else 0,
            approvers_role=approval.approvers if approval else None,
            allow_self_approval=approval.allow_self_approval if approval else False,
            expires_at=now + approval.expires_after if approval else None,
            steps=env.steps if req.kind == "deploy" else (None,),
            channel=svc.channel or self._announce_channel or req.channel,
        )
        await self._store.create(record)
        await self._audit.record(
            actor=req.user,
            action=f"{req.kind}.request",
            result="ok",
            channel=req.channel,
            target=f"{req.service} {version} → {req.environment}",
            detail=f"{record.id}{' forced' if record.forced else ''} {req.reason}".strip(),
        )
        self._tasks.spawn(self._announce(record.id), name=f"deploy-announce:{record.id}")
        return record

    async def _announce(self, deploy_id: str) -> None:
        record = await self._store.get(deploy_id)
        if record is None or record.state != DeployState.REQUESTED:
            return
        if record.required_approvals:
            record = await self._store.update(
                deploy_id, lambda r: r.moved(DeployState.AWAITING_APPROVAL, self._clock())
            )
        try:
            text, blocks = deploy_message(record, now=self._clock(), checklist=self._checklist(record))
            response = await self._post(record.channel or "", text=text, blocks=blocks)
        except SlackApiError as error:
            reason = f"could not post to {record.channel}: {error.response.get('error')}"
            record = await self._store.update(
                deploy_id, lambda r: r.moved(DeployState.FAILED, self._clock(), detail=reason)
            )
            await self._dm(
                record.requested_by,
                f":x: {title(record)} did not start: {reason}. Invite the bot there or set the service's `channel`.",
            )
            return
        record = await self._store.update(
            deploy_id, lambda r: r.model_copy(update={"channel": response["channel"], "message_ts": response["ts"]})
        )
        if not record.required_approvals:
            await self._start(deploy_id)

    async def _live_lock(self, service: str, environment: str) -> LockInfo | None:
        """The run lock, unless its deploy already finished (it is released a moment after)."""
        lock = await self._store.lock_holder(service, environment)
        if lock is None or lock.deploy_id is None:
            return lock
        owner = await self._store.get(lock.deploy_id)
        return None if owner is not None and owner.terminal else lock

    def _checklist(self, record: DeployRecord) -> tuple[str, ...]:
        _, env = self.environment(record.service, record.environment)
        return (env.approval.checklist if env.approval else ()) + env.checklist

    # -- approvals ----------------------------------------------------------------------------------------

    async def approve(self, deploy_id: str, user: str, *, is_approver: bool) -> DeployRecord:
        """Records an approval; the one that completes the count starts the deploy (exactly once)."""
        now = self._clock()

        def change(record: DeployRecord) -> DeployRecord:
            check = check_approval(record, user, is_approver=is_approver)
            if check.refusal:
                raise UserFacingError(check.refusal)
            if check.duplicate:
                raise _Unchanged
            if record.expires_at is not None and record.expires_at <= now:
                raise UserFacingError("This request has expired; ask for a new deploy.")
            decided = record.model_copy(
                update={
                    "decisions": (*record.decisions, Decision(user=user, at=now, decision="approve")),
                    "updated_at": now,
                }
            )
            return decided.moved(DeployState.RUNNING, now) if check.enough else decided

        record = await self._decide(deploy_id, change)
        await self._audit.record(
            actor=user, action=f"{record.kind}.approve", result="ok", target=deploy_id, channel=record.channel or ""
        )
        await self._refresh(record)
        if record.state == DeployState.RUNNING:
            self._tasks.spawn(self._start(deploy_id), name=f"deploy:{deploy_id}")
        return record

    async def reject(self, deploy_id: str, user: str, *, is_approver: bool) -> DeployRecord:
        """Rejects a waiting request (approvers only)."""
        now = self._clock()

        def change(record: DeployRecord) -> DeployRecord:
            if record.state != DeployState.AWAITING_APPROVAL:
                raise UserFacingError(f"This request is already {record.state.value.replace('_', ' ')}.")
            if not is_approver:
                raise UserFacingError(f"Only members of `{record.approvers_role}` can reject this deploy.")
            decided = record.model_copy(
                update={"decisions": (*record.decisions, Decision(user=user, at=now, decision="reject"))}
            )
            return decided.moved(DeployState.REJECTED, now, detail=f"Rejected by <@{user}>.")

        record = await self._decide(deploy_id, change)
        await self._audit.record(
            actor=user, action=f"{record.kind}.reject", result="ok", target=deploy_id, channel=record.channel or ""
        )
        await self._refresh(record)
        await self._dm(record.requested_by, f":no_entry: <@{user}> rejected {title(record)} (`{record.id}`).")
        return record

    async def cancel(self, deploy_id: str, user: str, *, is_admin: bool) -> DeployRecord:
        """Cancels a deploy that has not started running (its requester or an admin)."""
        now = self._clock()

        def change(record: DeployRecord) -> DeployRecord:
            if record.requested_by != user and not is_admin:
                raise UserFacingError(
                    f"Only <@{record.requested_by}> (who asked) or an admin can cancel `{record.id}`."
                )
            if record.state not in (DeployState.REQUESTED, DeployState.AWAITING_APPROVAL):
                raise UserFacingError(
                    f"`{record.id}` is {record.state.value.replace('_', ' ')}; "
                    "only a deploy that has not started can be cancelled."
                )
            return record.moved(DeployState.CANCELLED, now, cancelled_by=user)

        record = await self._decide(deploy_id, change)
        await self._audit.record(
            actor=user, action=f"{record.kind}.cancel", result="ok", target=deploy_id, channel=record.channel or ""
        )
        await self._refresh(record)
        return record

    async def _decide(self, deploy_id: str, change: Callable[[DeployRecord], DeployRecord]) -> DeployRecord:
        try:
            return await self._store.update(deploy_id, change)
        except KeyError:
            raise UserFacingError(f"There is no deploy `{deploy_id}`.") from None
        except _Unchanged:
            record = await self._store.get(deploy_id)
            assert record is not None
            return record
        except IllegalTransition as error:
            raise UserFacingError(str(error)) from None

    # -- running ------------------------------------------------------------------------------------------

    async def _start(self, deploy_id: str) -> None:
        record = await self._store.get(deploy_id)
        if record is None or deploy_id in self._running:
            return
        for _ in range(25):
            lock, holder = await self._store.acquire_lock(
                record.service,
                record.environment,
                holder=record.requested_by,
                reason=title(record),
                deploy_id=deploy_id,
                now=self._clock(),
                ttl=self._ttl,
            )
            if lock is not None or await self._live_lock(record.service, record.environment) is not None:
                break
            await asyncio.sleep(0.2)  # the previous deploy finished and is releasing its lock
        if lock is None:
            who = f"<@{holder.holder}> ({holder.reason}) since {holder.since:%H:%M}Z" if holder else "someone"
            record = await self._store.update(
                deploy_id,
                lambda r: r.moved(
                    DeployState.FAILED, self._clock(), detail=f"Not started: {who} holds the deploy lock."
                ),
            )
            await self._refresh(record)
            return
        self._running.add(deploy_id)
        try:
            lost = await self._holding(record, lock, self._run(deploy_id))
            if lost is not None:
                await self._lost(deploy_id, lost)
        except Exception:
            ref = new_ref()
            log.exception("deploy %s failed inside chatops (ref %s)", deploy_id, ref)
            record = await self._store.update(
                deploy_id,
                lambda r: (
                    r
                    if r.terminal
                    else r.moved(
                        DeployState.FAILED, self._clock(), detail=f"chatops failed while running it (ref {ref})."
                    )
                ),
            )
            await self._refresh(record)
        finally:
            await self._store.release_lock(record.service, record.environment, lock.token)  # only if still ours
            self._running.discard(deploy_id)

    async def _holding(self, record: DeployRecord, lock: LockInfo, work: Coroutine[Any, Any, None]) -> str | None:
        """Runs `work` while renewing `lock`: None once it is done, or why the lock was lost, after `work` was
        cancelled (which stops a command and its processes) and has finished stopping. Its errors propagate."""
        run = asyncio.ensure_future(work)
        keeper = asyncio.ensure_future(self._keep_lock(record, lock))
        try:
            done, _ = await asyncio.wait([run, keeper], return_when=asyncio.FIRST_COMPLETED)
            if run in done:
                run.result()
                return None
            reason = keeper.result()
            log.error("deploy %s lost its lock (%s); stopping it", record.id, reason)
            run.cancel()
            await asyncio.gather(run, return_exceptions=True)
            return reason
        finally:
            for task in (run, keeper):
                task.cancel()
            await asyncio.gather(run, keeper, return_exceptions=True)

    async def _keep_lock(self, record: DeployRecord, lock: LockInfo) -> str:
        """Renews the lock every third of its TTL; returns why it is lost: someone else's now, or not renewed
        (Redis errors) for as long as the TTL, so it may have expired and another replica may have taken over."""
        loop = asyncio.get_running_loop()
        ttl = self._ttl.total_seconds()
        renewed = loop.time()  # when the last renewal that worked was sent: the lock lasts at least TTL from then
        while True:
            await asyncio.sleep(max(0.0, min(ttl / 3, renewed + ttl - loop.time())))
            sent = loop.time()
            if sent >= renewed + ttl:
                return f"its lock could not be renewed for {human_duration(self._ttl)}"
            try:
                ours = await asyncio.wait_for(
                    self._store.renew_lock(record.service, record.environment, lock.token, self._ttl),
                    timeout=renewed + ttl - sent,
                )
            except Exception:  # a Redis blip: try again, until the TTL would have run out
                log.warning("could not renew the lock of deploy %s", record.id, exc_info=True)
                continue
            if not ours:
                return "its lock expired or was taken by another process"
            renewed = sent

    async def _lost(self, deploy_id: str, reason: str) -> None:
        """Records a run stopped because it lost its lock (its command is already stopped)."""
        detail = (
            f"chatops stopped this deploy because {reason}; its command was stopped and its outcome is unknown. "
            "Check the service, then deploy again or roll back."
        )
        try:
            record = await self._store.update(
                deploy_id, lambda r: r if r.terminal else r.moved(DeployState.INTERRUPTED, self._clock(), detail=detail)
            )
        except Exception:  # Redis may be what failed: a recovering replica will mark it later
            log.warning("could not record that deploy %s lost its lock", deploy_id, exc_info=True)
            return
        await self._refresh(record)
        await self._emitter(record)(f":warning: {detail}")
        await self._dm(record.requested_by, f":warning: {title(record)} (`{record.id}`) was stopped: {detail}")
        await self._audit.record(
            actor="chatops",
            action=f"{record.kind}.interrupted",
            result="failed",
            target=deploy_id,
            channel=record.channel or "",
            detail=reason,
        )

    async def _apply(
        self,
        record: DeployRecord,
        deployer: Deployer,
        step: DeployStep,
        emit: Callable[[str], Awaitable[None]],
        *,
        track: bool = True,
    ) -> StepResult:
        """Runs one provider step; a step of local processes is recorded on the deploy first (host, pids, by when
        it is over), so a replica recovering the deploy knows whether it may still run."""
        if isinstance(deployer, RunReportingDeployer):

            async def on_run(external_id: str, url: str | None) -> None:
                # Recorded before the run is followed, so a restarted process resumes it (`_recovered`).
                if track:
                    await self._store.update(
                        record.id,
                        lambda r: r.model_copy(
                            update={"external_id": external_id, "external_url": url or r.external_url}
                        ),
                    )

            return await deployer.apply_reporting(step, emit, on_run)
        if not isinstance(deployer, SupervisedDeployer):
            return await deployer.apply(step, emit)
        now = self._clock()
        host, host_id = this_host()
        processes = StepProcesses(
            host=host,
            host_id=host_id,
            started_at=now,
            ends_by=now + deployer.work_limit,
            kill_grace_seconds=deployer.kill_grace.total_seconds(),
        )
        await self._store.update(record.id, lambda r: r.model_copy(update={"processes": processes}))

        async def started(run: LocalRun) -> None:
            known = processes.model_copy(update={"pid": run.pid, "pgid": run.pgid})
            await self._store.update(record.id, lambda r: r.model_copy(update={"processes": known}))

        result = await deployer.apply(step, emit, on_start=started)
        await self._store.update(record.id, lambda r: r.model_copy(update={"processes": None}))
        return result

    async def _run(self, deploy_id: str, *, resumed_external_id: str | None = None) -> None:
        record = await self._store.get(deploy_id)
        assert record is not None
        _, env = self.environment(record.service, record.environment)
        now = self._clock()
        if record.state == DeployState.REQUESTED:
            record = await self._store.update(deploy_id, lambda r: r.moved(DeployState.RUNNING, now, started_at=now))
        elif record.started_at is None:
            record = await self._store.update(deploy_id, lambda r: r.model_copy(update={"started_at": now}))
        deployer = self._deployer(record.service, record.environment)
        emit = self._emitter(record)
        failure = ""
        for index in range(record.step_index, len(record.steps)):
            weight = record.steps[index]
            label = f"step {index + 1}/{len(record.steps)} ({weight}%)" if weight is not None else "deploy"

            def running(r: DeployRecord, i: int = index, label: str = label) -> DeployRecord:
                return r.moved(DeployState.RUNNING, self._clock(), step_index=i).with_progress(
                    label, lambda _: StepProgress(label=label)
                )

            record = await self._store.update(deploy_id, running)
            await self._refresh(record)
            step = await self._target_of(self._step(record, weight))
            if resumed_external_id is not None and index == record.step_index:
                await emit(f"Following {label} again after a chatops restart.")
                resumed = await deployer.resume(step, resumed_external_id, emit)
                resumed_external_id = None
                if resumed is None:
                    raise _CannotResume
                result = resumed
            else:
                doing = f"shifting {weight}% of traffic to" if weight is not None else "deploying"
                await emit(f"*{label.capitalize()}*: {doing} {record.version}")
                result = await self._apply(record, deployer, step, emit)
            staged = isinstance(deployer, PromotingDeployer) and deployer.promotes(step)
            record = await self._record_result(deploy_id, result, label=label, served=not staged)
            if not result.ok:
                await self._refresh(record)
                failure = f"{label} failed: {result.summary}"
                break
            if env.health is not None:
                record = await self._store.update(deploy_id, lambda r: r.moved(DeployState.VERIFYING, self._clock()))
                await self._refresh(record)
                ok, why = await self._health_gate(env, result.url or record.external_url, emit, record.id, label)
                if not ok:
                    failure = f"health gate failed at {label}: {why}"
                    break
            record = await self._step_done(record.id, label)
            await emit(self._finished_line(record, label))
            if env.analysis is not None and record.kind == "deploy":
                if record.state != DeployState.VERIFYING:
                    record = await self._store.update(
                        deploy_id, lambda r: r.moved(DeployState.VERIFYING, self._clock())
                    )
                verdict = await self._bake(record, env.analysis, label, emit)
                if not verdict.ok:
                    failure = f"metric gate failed at {label}: {verdict.reason}"
                    break
            if isinstance(deployer, PromotingDeployer) and deployer.promotes(step):
                promoted = await deployer.promote(step, result, emit)
                record = await self._record_result(deploy_id, promoted, served=promoted.ok)
                if not promoted.ok:
                    failure = f"promoting {label} failed: {promoted.summary}"
                    break
                await emit(f":white_check_mark: {promoted.summary}")
        if not failure:
            commit_at = await self._commit_time(record)  # recorded with the success, so history never lacks it

            def succeeded(r: DeployRecord) -> DeployRecord:
                done = r.moved(DeployState.SUCCEEDED, self._clock(), detail="")
                return done.model_copy(update={"commit_at": commit_at}) if commit_at is not None else done

            record = await self._store.update(deploy_id, succeeded)
            await self._refresh(record)
            took = human_duration((record.finished_at or now) - (record.started_at or now))
            await emit(
                f":white_check_mark: <@{record.requested_by}> {record.service} {record.version} "
                f"is live in {record.environment} (took {took})."
            )
            await self._audit.record(
                actor=record.requested_by,
                action=f"{record.kind}.finish",
                result="ok",
                target=deploy_id,
                channel=record.channel or "",
            )
            return
        await self._fail(record, env, deployer, failure, emit)

    async def _health_gate(
        self,
        env: EnvironmentConfig,
        deployment_url: str | None,
        emit: Callable[[str], Awaitable[None]],
        deploy_id: str,
        label: str,
    ) -> tuple[bool, str]:
        """Runs the environment's health gate; a `{deployment_url}` in its URL is the deployment the step built
        (`deployment_url`), so a staged deployment is checked before it serves. Each check edits the step's block
        in the deploy message (`label`), never a thread reply per check. Returns (passed, why)."""
        assert env.health is not None

        async def show(change: Callable[[StepProgress], StepProgress]) -> None:
            record = await self._store.update(deploy_id, lambda r: r.with_progress(label, change))
            await self._refresh(record)

        async def checked(probe: ProbeResult) -> None:
            await show(
                lambda p: p.checked(ok=probe.ok, status=probe.status, latency_ms=probe.latency_ms, error=probe.error)
            )

        try:
            settings = env.health.for_deployment(deployment_url)
            headers = env.health.headers(self._environ)
        except ValueError as error:
            await show(lambda p: p.model_copy(update={"state": "failed"}))
            return False, str(error)
        await show(lambda p: p.model_copy(update={"state": "checking"}))
        if env.health.needs_deployment_url:
            await emit(f"Health gate: checking the deployment itself at {settings.url}")
        gate = await health_gate(self._http, settings, emit=emit, headers=headers, on_probe=checked)
        if not gate.ok:
            await show(lambda p: p.model_copy(update={"state": "failed"}))
        return gate.ok, gate.reason

    async def _step_done(self, deploy_id: str, label: str) -> DeployRecord:
        """Marks a step's block done once its provider step and health gate passed."""
        record = await self._store.update(
            deploy_id, lambda r: r.with_progress(label, lambda p: p.model_copy(update={"state": "passed"}))
        )
        await self._refresh(record)
        return record

    @staticmethod
    def _finished_line(record: DeployRecord, label: str) -> str:
        """The thread's one reply when a step is through: what the provider said and the health checks in short."""
        block = next((p for p in record.progress if p.label == label), None)
        said = f": {block.summary}" if block and block.summary else ""
        checks = health_line(block) if block else ""
        return f":white_check_mark: {label.capitalize()} done{said}" + (f" · health {checks}" if checks else "")

    async def _bake(
        self, record: DeployRecord, settings: AnalysisSettings, label: str, emit: Callable[[str], Awaitable[None]]
    ) -> AnalysisResult:
        """Watches the step's metrics for the bake time. Every check edits the lines in the deploy message (never
        a thread reply per check); the thread gets one line when the bake starts and one with the verdict."""
        checks = self._health_checks(record.service, record.environment)
        names = ", ".join(check.name for check in checks)
        await emit(
            f":stopwatch: {label.capitalize()}: watching {names} for {human_duration(settings.bake)}, "
            f"every {human_duration(settings.interval)}."
        )

        async def show(progress: AnalysisProgress, verdict: Literal["running", "passed", "failed"] = "running") -> None:
            view = _analysis_view(progress, label, settings, verdict)
            updated = await self._store.update(record.id, lambda r: r.model_copy(update={"analysis": view}))
            await self._refresh(updated)

        result = await run_analysis(checks, settings, report=show)
        try:
            await show(result.progress, "passed" if result.ok else "failed")
        except Exception:  # the verdict decides the deploy; showing it is best effort
            log.warning("could not show the metric gate's verdict of deploy %s", record.id, exc_info=True)
        await emit(
            f":white_check_mark: {label}: metric gate passed ({result.reason})."
            if result.ok
            else f":x: {label}: metric gate failed: {result.reason}."
        )
        return result

    async def _fail(
        self,
        record: DeployRecord,
        env: EnvironmentConfig,
        deployer: Deployer,
        failure: str,
        emit: Emit,
    ) -> None:
        if env.auto_rollback and record.kind == "deploy" and record.previous_version:
            target = record.previous_version
            await emit(f":rewind: {failure}. Rolling back to {target} automatically.")
            step = await self._target_of(
                DeployStep(
                    deploy_id=record.id,
                    service=record.service,
                    environment=record.environment,
                    version=target,
                    previous_version=record.version,
                    weight=None,
                    rollback=True,
                    requested_by=record.requested_by,
                )
            )
            label = f"rollback to {target}"
            record = await self._store.update(
                record.id, lambda r: r.with_progress(label, lambda _: StepProgress(label=label))
            )
            await self._refresh(record)
            result = await self._apply(record, deployer, step, emit, track=False)
            record = await self._store.update(
                record.id,
                lambda r: r.with_progress(
                    label,
                    lambda p: p.model_copy(
                        update={"summary": result.summary, "state": "running" if result.ok else "failed"}
                    ),
                ),
            )
            healthy = result.ok
            why = result.summary
            if result.ok and env.health is not None:
                # The deployment rolled back to is the one to check, not the failed one the record names.
                healthy, why = await self._health_gate(env, result.url, emit, record.id, label)
            if healthy:
                record = await self._step_done(record.id, label)
            if healthy:
                detail = f"{failure}. Rolled back to {target} automatically."
                record = await self._store.update(
                    record.id, lambda r: r.moved(DeployState.ROLLED_BACK, self._clock(), detail=detail)
                )
            else:
                detail = f"{failure}. The automatic rollback to {target} failed too ({why}): needs a human."
                record = await self._store.update(
                    record.id, lambda r: r.moved(DeployState.FAILED, self._clock(), detail=detail)
                )
        else:
            advice = failure_advice(record)
            detail = f"{failure}. Stopped; waiting for a human." + (f" {advice}" if advice else "")
            record = await self._store.update(
                record.id, lambda r: r.moved(DeployState.FAILED, self._clock(), detail=detail)
            )
        await self._refresh(record)
        await emit(f":x: {record.detail}")
        await self._dm(record.requested_by, f":x: {title(record)} (`{record.id}`): {record.detail}")
        await self._audit.record(
            actor=record.requested_by,
            action=f"{record.kind}.finish",
            result="failed",
            target=record.id,
            channel=record.channel or "",
            detail=record.detail,
        )

    async def _record_result(
        self, deploy_id: str, result: StepResult, *, label: str | None = None, served: bool = False
    ) -> DeployRecord:
        """Keeps what a step told of its run: the provider's id and link, the commit it deployed, whether the
        version now serves (`served` and ok: the old one was replaced) and, under `label`, the provider's summary."""

        def keep(r: DeployRecord) -> DeployRecord:
            kept = r.model_copy(
                update={
                    "external_id": result.external_id or r.external_id,
                    "external_url": result.url or r.external_url,
                    "commit_sha": result.commit_sha or r.commit_sha,
                    "commit_repo": result.commit_repo or r.commit_repo,
                    "went_live": r.went_live or (served and result.ok),
                }
            )
            if label is None:
                return kept
            state = "running" if result.ok else "failed"
            return kept.with_progress(label, lambda p: p.model_copy(update={"summary": result.summary, "state": state}))

        return await self._store.update(deploy_id, keep)

    async def _target_of(self, step: DeployStep) -> DeployStep:
        """A rollback step with the provider's id of the run that last put its version in place, from history."""
        if not step.rollback:
            return step
        for earlier in await self._store.history(step.service, step.environment, [], 200):
            if (
                earlier.id != step.deploy_id
                and earlier.version == step.version
                and earlier.external_id
                and (earlier.state == DeployState.SUCCEEDED)
            ):
                return dataclasses.replace(step, target_external_id=earlier.external_id)
        return step

    async def _commit_time(self, record: DeployRecord) -> datetime | None:
        """When the deployed commit was made (GitHub's commit API), for lead time; None when unknown (never fails a
        deploy)."""
        settings = self._settings.lead_time
        if not (
            record.commit_sha
            and record.commit_repo
            and record.kind == "deploy"
            and record.environment in settings.environments
        ):
            return None
        token = self._environ.get(settings.token_env) if settings.token_env else None
        try:
            return await commit_time(self._http, settings.api_url, record.commit_repo, record.commit_sha, token=token)
        except CommitLookupError as error:
            log.warning("no lead time for deploy %s: %s", record.id, error)
            return None

    def _step(self, record: DeployRecord, weight: int | None) -> DeployStep:
        return DeployStep(
            deploy_id=record.id,
            service=record.service,
            environment=record.environment,
            version=record.version,
            previous_version=record.previous_version,
            weight=weight,
            rollback=record.kind == "rollback",
            requested_by=record.requested_by,
        )

    # -- ticks: expiry and recovery -----------------------------------------------------------------------

    async def tick(self) -> None:
        """Expires approvals past their deadline and recovers deploys whose process died (safe on every replica)."""
        now = self._clock()
        for deploy_id in await self._store.claim_due(now):
            try:
                record = await self._store.update(
                    deploy_id, lambda r: r.moved(DeployState.EXPIRED, now, detail="Nobody approved it in time.")
                )
            except (IllegalTransition, KeyError):
                continue
            await self._refresh(record)
            await self._dm(
                record.requested_by, f":hourglass: {title(record)} (`{record.id}`) expired without enough approvals."
            )
            await self._audit.record(
                actor="chatops",
                action=f"{record.kind}.expire",
                result="ok",
                target=deploy_id,
                channel=record.channel or "",
            )
        for record in await self._store.active():
            if record.id in self._running:
                continue
            if record.state in (DeployState.RUNNING, DeployState.VERIFYING):
                holder = await self._store.lock_holder(record.service, record.environment)
                if holder is None or holder.deploy_id != record.id:
                    # Recovery may wait for a command's timeout: it must not hold up the next ticks.
                    self._running.add(record.id)
                    self._tasks.spawn(self._recover(record), name=f"deploy-recover:{record.id}")
            elif record.state == DeployState.REQUESTED and now - record.created_at > STUCK_REQUEST_AFTER:
                self._tasks.spawn(self._announce(record.id), name=f"deploy-announce:{record.id}")

    async def _recover(self, record: DeployRecord) -> None:
        """A deploy whose process died: follow it again when the provider can, else mark it interrupted, once
        nothing it started can still run. Holds the lock meanwhile, so no other deploy overlaps it."""
        try:
            lock, _ = await self._store.acquire_lock(
                record.service,
                record.environment,
                holder=record.requested_by,
                reason=f"recovering {record.id}",
                deploy_id=record.id,
                now=self._clock(),
                ttl=self._ttl,
            )
            if lock is None:
                return  # another replica is recovering it, or a new deploy runs
            try:
                await self._holding(record, lock, self._recovered(record))  # lost: another replica took over
            except IllegalTransition:
                pass
            finally:
                await self._store.release_lock(record.service, record.environment, lock.token)  # only if still ours
        finally:
            self._running.discard(record.id)

    async def _recovered(self, record: DeployRecord) -> None:
        """Follows a dead process's deploy again, or marks it interrupted once its step cannot be running."""
        if record.external_id:
            try:
                await self._run(record.id, resumed_external_id=record.external_id)
                return
            except _CannotResume:
                pass
        record = await self._store.get(record.id) or record
        if record.terminal:
            return  # its own process ended it meanwhile (it lost its lock and stopped its command)
        note = await self._wait_for_processes(record)
        detail = (
            f"chatops stopped while this deploy ran; its outcome is unknown.{note} "
            "Check the service, then deploy again or roll back."
        )
        updated = await self._store.update(
            record.id, lambda r: r.moved(DeployState.INTERRUPTED, self._clock(), detail=detail)
        )
        await self._refresh(updated)
        await self._emitter(updated)(f":warning: {detail}")
        await self._dm(updated.requested_by, f":warning: {title(updated)} (`{updated.id}`) was interrupted: {detail}")
        await self._audit.record(
            actor="chatops",
            action=f"{record.kind}.interrupted",
            result="failed",
            target=record.id,
            channel=record.channel or "",
        )

    async def _wait_for_processes(self, record: DeployRecord) -> str:
        """Returns once the step the dead process ran can no longer be running: its process group stopped, when
        it is on this host, else its timeout passed. Says what happened in the thread; returns a note for the
        deploy's detail."""
        processes = record.processes
        emit = self._emitter(record)
        _, host_id = this_host()
        action = recovery_action(processes, host_id=host_id, now=self._clock())
        if action == "interrupt" or processes is None:
            return ""
        if action == "stop_group" and processes.pgid is not None:
            pgid = processes.pgid
            if not group_alive(pgid):
                await emit(f"The previous chatops process was killed; its command (pid {pgid}) had already stopped.")
                return f" Its command (pid {pgid}) had stopped."
            if await stop_group(pgid, grace=processes.kill_grace_seconds):
                await emit(f"The previous chatops process was killed; its command (pid {pgid}) was stopped.")
                return f" Its command (pid {pgid}) was stopped."
            # A zombie keeps its group until its parent reaps it, and that parent is the step's supervisor: one that
            # is stuck never will. Stopping every process of the deploy, the supervisor too, hands the zombie to init.
            if await self._stop_marked(record.id, processes.kill_grace_seconds) and await stop_group(
                pgid, grace=0.0, gone_within=_REAPED_WITHIN
            ):
                await emit(
                    f"The previous chatops process was killed; its command (pid {pgid}) and the command's supervisor "
                    "were stopped."
                )
                return f" Its command (pid {pgid}) and its supervisor were stopped."
        elif processes.host_id == host_id and await self._stop_marked(record.id, processes.kill_grace_seconds):
            # Killed as its command started, before the command's group was recorded: the step's processes were
            # found by the marker in their environment, and stopped.
            await emit("The previous chatops process was killed as its command started; nothing it started is running.")
            return " Nothing its command started was still running."
        # Another host (its pids mean nothing here), or a group that would not go: its supervisor stops it by then.
        where = f" on {processes.host}" if processes.host_id != host_id else ""
        await emit(
            f":hourglass: The previous chatops process{where} stopped while the command ran; waiting until "
            f"{processes.ends_by:%H:%M:%S}Z for the command's timeout before releasing the lock."
        )
        left = (processes.ends_by - self._clock()).total_seconds()
        if left > 0:
            await asyncio.sleep(left)
        return f" Its command's time ran out at {processes.ends_by:%H:%M:%S}Z."

    async def _stop_marked(self, deploy_id: str, grace: float) -> bool:
        """Stops every process group of `deploy_id`'s command steps on this host; True once none is left, False
        when that cannot be told here (no /proc) or some would not stop."""
        groups = await asyncio.to_thread(run_groups, deploy_id)
        if groups is None:
            return False
        for pgid in groups:
            await stop_group(pgid, grace=grace)
        return await asyncio.to_thread(run_groups, deploy_id) == set()

    # -- reading ------------------------------------------------------------------------------------------

    async def history(self, service: str, environment: str | None, limit: int) -> tuple[list[DeployRecord], Figures]:
        """The newest deploys of a service and the figures over the last 30 UTC days (today's included)."""
        svc = self.services.get(service)
        if svc is None:
            self.environment(service, "")
        assert svc is not None
        if environment is not None:
            self.environment(service, environment)
        envs = list(svc.environments)
        records = await self._store.history(service, environment, envs, limit)
        now = self._clock()
        chosen = [environment] if environment else envs
        # From daily counters: the same cost however long the history.
        figures = await self._store.figures(service, chosen, now)
        if figures is None:
            # Until the retention job has counted the deploys an earlier version finished: the window's records (by
            # creation, with room for a deploy that waited for approval and ran long), over the same UTC days.
            days, end = calendar_window(now)
            window = await self._store.recent(service, chosen, end - timedelta(days=len(days)) - FIGURES_LOOKBACK)
            figures = compute_figures(window, end, timedelta(days=len(days)))
        return records, figures

    async def get(self, deploy_id: str) -> DeployRecord | None:
        """The deploy's record, or None when there is no such deploy."""
        return await self._store.get(deploy_id)

    async def current_version(self, service: str, environment: str) -> str | None:
        """The version last deployed successfully to an environment, if any."""
        return await self._store.current_version(service, environment)

    async def running_record(self, service: str, environment: str) -> tuple[str | None, DeployRecord | None]:
        """The version running in an environment and the deploy that put it there, if it is known."""
        return await self._store.running_record(service, environment)

    async def running_records(
        self,
        pairs: Sequence[tuple[str, str]],
    ) -> dict[tuple[str, str], tuple[str | None, DeployRecord | None]]:
        """`running_record` for many (service, environment) pairs, read together (what `/status` shows)."""
        return await self._store.running_records(pairs)

    async def active(self) -> list[DeployRecord]:
        """Deploys not yet finished (awaiting approval, running, verifying)."""
        return await self._store.active()

    async def holds(self, now: datetime | None = None) -> Holds:
        """Manual locks in force at `now` (the clock's now by default), by `<env>:<service or *>`."""
        return await self._store.holds(now or self._clock())

    async def between(self, start: datetime, end: datetime) -> list[DeployRecord]:
        """Deploys of every configured service created between `start` and `end` (the newest 200 per service)."""
        found: list[DeployRecord] = []
        for name, service in self.services.items():
            records = await self._store.history(name, None, list(service.environments), 200)
            found += [r for r in records if start <= r.created_at <= end]
        return found

    # -- manual locks -------------------------------------------------------------------------------------

    def lock_role(self, environment: str, service: str | None) -> str:
        """The role that may lock or unlock an environment (or one service in it): the environment's deploy role;
        `admins` when the services in that environment name different roles."""
        if service:
            return self.environment(service, environment)[1].deploy_role
        roles = {
            svc.environments[environment].deploy_role
            for svc in self.services.values()
            if environment in svc.environments
        }
        if not roles:
            known = sorted({e for svc in self.services.values() for e in svc.environments})
            listed = ", ".join(f"`{e}`" for e in known) or "none"
            raise UserFacingError(f"No service has an environment `{environment}`. Environments: {listed}.")
        return "admins" if len(roles) > 1 else roles.pop()

    async def lock(
        self,
        environment: str,
        service: str | None,
        *,
        user: str,
        reason: str,
        duration: timedelta,
        token: str | None,
    ) -> LockInfo:
        """Holds deploys to an environment (or one service in it) for `duration`; `token` names the lock (the
        request's trigger id), the current time otherwise."""
        now = self._clock()
        hold = LockInfo(
            token=token or now.isoformat(), holder=user, reason=reason, since=now, until=now + duration, deploy_id=None
        )
        await self._store.set_hold(environment, service, hold)
        return hold

    async def unlock(self, environment: str, service: str | None) -> LockInfo | None:
        """Removes a manual lock; the lock removed, or None when there was none."""
        return await self._store.remove_hold(environment, service)

    # -- Slack --------------------------------------------------------------------------------------------

    async def _post(self, channel: str, **message: object) -> dict[str, str]:
        return await post_message(self._slack, channel, **message)

    async def _refresh(self, record: DeployRecord) -> None:
        if not record.channel or not record.message_ts:
            return
        text, blocks = deploy_message(record, now=self._clock(), checklist=self._checklist(record))
        try:
            await self._slack.chat_update(channel=record.channel, ts=record.message_ts, text=text, blocks=blocks)
        except SlackApiError as error:
            log.warning("could not update the message of deploy %s: %s", record.id, error.response.get("error"))

    def _emitter(self, record: DeployRecord) -> Emit:
        async def emit(line: str) -> None:
            if not record.channel or not record.message_ts:
                return
            try:
                await self._slack.chat_postMessage(channel=record.channel, thread_ts=record.message_ts, text=line)
            except SlackApiError as error:
                log.warning("could not post to the thread of deploy %s: %s", record.id, error.response.get("error"))

        return emit

    async def _dm(self, user: str, text: str) -> None:
        try:
            await self._slack.chat_postMessage(channel=user, text=text)
        except SlackApiError as error:
            log.warning("could not DM %s: %s", user, error.response.get("error"))

    async def aclose(self) -> None:
        """Releases provider and health-check clients."""
        for deployer in self._deployers.values():
            await deployer.aclose()
        for checks in self._checks.values():
            for check in checks:
                await check.aclose()


def _analysis_view(
    progress: AnalysisProgress, step: str, settings: AnalysisSettings, verdict: Literal["running", "passed", "failed"]
) -> AnalysisView:
    """The record's copy of a step's analysis progress, for the deploy message."""
    return AnalysisView(
        step=step,
        checks_done=progress.checks_done,
        checks=progress.checks,
        interval_seconds=settings.interval.total_seconds(),
        failure_limit=progress.failure_limit,
        verdict=verdict,
        lines=tuple(
            CheckLine(name=m.name, value=m.value, limit=m.limit, ok=m.ok, failures=m.failures, error=m.error)
            for m in progress.metrics
        ),
    )
