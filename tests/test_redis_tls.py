"""REDIS_URL over TLS against real TLS-only servers started here (redis-server with `--port 0 --tls-port P`, a CA and
a certificate for 127.0.0.1 generated for the test): one server (`rediss://`), a primary with a replica under three
Sentinels, failover included (`rediss+sentinel://`), a three-master cluster (`rediss+cluster://`), mutual TLS, and a
server whose certificate another CA signed, which the bot refuses with a clear readiness error."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ConnectionError as RedisConnectionError

from bot.emulator import SlackEmulator
from bot.platform.keys import Keys
from bot.platform.metrics import Metrics
from bot.platform.redis_client import PoolOptions, build_redis_client, parse_redis_url
from bot.platform.store import Store
from tests.conftest import start_bot
from tests.redis_servers import (
    ClusterDeployment,
    RedisProcess,
    SentinelDeployment,
    TlsFiles,
    make_tls_files,
    require_tls,
    start_server,
    url,
)
from tests.state import state
from tests.test_redis_ha import config, post_alert, posted
from tests.waiting import eventually


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A test CA and the servers' certificate for 127.0.0.1 it signed (skips unless redis-server serves TLS)."""
    require_tls(tmp_path_factory.mktemp("tls-probe"))
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture
async def tls_server(tls: TlsFiles, tmp_path: Path) -> AsyncIterator[RedisProcess]:
    """One redis-server listening only for TLS."""
    server = await asyncio.to_thread(start_server, tmp_path / "redis", tls=tls)
    try:
        yield server
    finally:
        await asyncio.to_thread(server.stop)


async def _true(value: object) -> bool:
    return bool(value)


async def _store_round_trip(redis_url: str) -> None:
    """The chatops Store's own operations through the client REDIS_URL builds: ping, a claim, a watched update."""
    client = build_redis_client(parse_redis_url(redis_url), PoolOptions(max_connections=4))
    store = Store(client, Keys("tlstest"), Metrics())
    try:
        await store.ping()
        assert await store.claim_once("command", "req-1") is True
        assert await store.claim_once("command", "req-1") is False  # the retry of the same request

        def change(current: str | None, pipe: object) -> str:
            pipe.set("tlstest:{rec}:r1", (current or "") + "x")
            return "changed"

        assert await store.update_watched("tlstest:{rec}:r1", change) == "changed"
        assert await store.call("get", client.get("tlstest:{rec}:r1")) == "x"
    finally:
        await client.aclose()


@pytest.mark.timeout(120)
async def test_a_tls_server_holds_the_store_and_the_bot_posts_an_alert(
    tls_server: RedisProcess,
    emulator: SlackEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    redis_url = url(tls_server)
    assert redis_url.startswith("rediss://127.0.0.1:") and "ssl_ca_certs=" in redis_url
    await _store_round_trip(redis_url)
    bot, runner = await start_bot(emulator, redis_url, config(monkeypatch, tmp_path))
    try:
        assert await post_alert(bot, "OverTls") == 200
        await eventually(lambda: _true(posted(bot, "OverTls")), "the alert's message in #alerts")
        direct = aioredis.Redis(
            host="127.0.0.1",
            port=tls_server.port,
            ssl=True,
            ssl_ca_certs=str(tls_server.tls.ca) if tls_server.tls else None,
            decode_responses=True,
        )
        try:
            entries = await direct.xrange(state(bot).alerts.k("stream"))
        finally:
            await direct.aclose()
        assert any("OverTls" in json.dumps(fields) for _, fields in entries), "the alert is not in the TLS server"
    finally:
        await runner.cleanup()


@pytest.mark.timeout(60)
async def test_mutual_tls_sends_the_client_certificate_given_in_the_url(tls: TlsFiles, tmp_path: Path) -> None:
    server = await asyncio.to_thread(start_server, tmp_path / "mtls", tls=tls, extra=("--tls-auth-clients", "yes"))
    try:
        anonymous = build_redis_client(parse_redis_url(url(server)), PoolOptions(max_connections=2))
        try:
            with pytest.raises((RedisConnectionError, OSError)):  # the server wants a client certificate
                await anonymous.ping()
        finally:
            await anonymous.aclose()
        await _store_round_trip(f"{url(server)}&ssl_certfile={tls.cert}&ssl_keyfile={tls.key}")
    finally:
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def tls_sentinels(tls: TlsFiles, tmp_path: Path) -> AsyncIterator[SentinelDeployment]:
    deployment = await asyncio.to_thread(SentinelDeployment(tmp_path / "sentinel", replicas=1, tls=tls).start)
    try:
        yield deployment
    finally:
        await asyncio.to_thread(deployment.stop)


@pytest.mark.timeout(240)
async def test_sentinel_over_tls_follows_a_failover(
    tls_sentinels: SentinelDeployment,
    emulator: SlackEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    assert tls_sentinels.url.startswith("rediss+sentinel://")
    await _store_round_trip(tls_sentinels.url)
    bot, runner = await start_bot(emulator, tls_sentinels.url, config(monkeypatch, tmp_path))
    try:
        assert await post_alert(bot, "BeforeTlsFailover") == 200
        await eventually(lambda: _true(posted(bot, "BeforeTlsFailover")), "the first alert's message in #alerts")
        await asyncio.to_thread(tls_sentinels.fail_primary)

        async def accepted() -> bool:  # as a sender does: retry a 5xx until it is accepted
            return await post_alert(bot, "AfterTlsFailover") == 200

        await eventually(accepted, "a webhook accepted by the promoted primary, found through the TLS Sentinels")
        await eventually(lambda: _true(posted(bot, "AfterTlsFailover")), "the second alert's message in #alerts")
    finally:
        await runner.cleanup()


@pytest.mark.timeout(180)
async def test_a_tls_cluster_holds_the_store_and_the_bot_posts_an_alert(
    tls: TlsFiles,
    emulator: SlackEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    cluster = await asyncio.to_thread(ClusterDeployment(tmp_path / "cluster", tls=tls).start)
    try:
        assert cluster.url.startswith("rediss+cluster://")
        client = build_redis_client(parse_redis_url(cluster.url), PoolOptions(max_connections=4))
        try:
            assert isinstance(client, RedisCluster)
            assert len(await client.cluster_nodes()) == 3  # it reached the whole cluster over TLS
        finally:
            await client.aclose()
        await _store_round_trip(cluster.url)
        bot, runner = await start_bot(emulator, cluster.url, config(monkeypatch, tmp_path))
        try:
            assert await post_alert(bot, "ClusterTls") == 200
            await eventually(lambda: _true(posted(bot, "ClusterTls")), "the alert's message in #alerts")
        finally:
            await runner.cleanup()
    finally:
        await asyncio.to_thread(cluster.stop)


async def _readiness(origin: str) -> tuple[int, dict[str, object]]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(
            f"{origin}/readyz",
            timeout=aiohttp.ClientTimeout(total=30),
        ) as response,
    ):
        return response.status, await response.json()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("form", ["server", "sentinel", "cluster"])
async def test_a_certificate_signed_by_another_ca_is_refused_with_a_clear_readiness_error(
    form: str,
    tls_server: RedisProcess,
    tls: TlsFiles,
    emulator: SlackEmulator,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    other = make_tls_files(tmp_path / "other-ca", name="some other CA")
    if form == "server":
        redis_url = f"rediss://127.0.0.1:{tls_server.port}/0{other.query}"
    elif form == "sentinel":  # the Sentinel is the TLS server itself: the handshake fails before any command
        redis_url = f"rediss+sentinel://127.0.0.1:{tls_server.port}/chatops/0{other.query}"
    else:  # and so is the cluster's start-up node
        redis_url = f"rediss+cluster://127.0.0.1:{tls_server.port}{other.query}"
    bot, runner = await start_bot(emulator, redis_url, config(monkeypatch, tmp_path))
    try:
        reasons: list[str] = []

        async def refused() -> bool:
            status, body = await _readiness(bot.url)
            assert status == 503, body
            reasons[:] = [str(r) for r in body["reasons"]]
            return any("certificate verify failed" in r.lower() for r in reasons)

        try:
            await eventually(refused, "/readyz to name the failed certificate check")
        except AssertionError as error:
            raise AssertionError(f"{error}; it said {reasons}") from None
        text = " ".join(reasons)
        assert "Traceback" not in text and "redis:" in text, text
        assert await post_alert(bot, "Untrusted") == 503  # nothing is accepted that could not be stored
    finally:
        await runner.cleanup()
