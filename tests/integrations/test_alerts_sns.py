"""The SNS source against a real local HTTPS server: a CA generated here signs the server's TLS certificate and an
SNS-like signing certificate; the source trusts that CA through `ca_bundle_path` (verification is never turned off)
and accepts the server's host through `cert_host_pattern`. Messages are signed here as SNS signs them (SignatureVersion
1 = SHA1withRSA, 2 = SHA256withRSA over AWS's string to sign), then forged every way that matters: tampered Message,
another key, a certificate URL on another host or over http, an unknown topic, an old timestamp. The server counts
certificate fetches, so caching is checked too."""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from integrations.alerts import (
    Accepted,
    Alert,
    AlertSource,
    Confirmation,
    SourceConfigError,
    WebhookRejected,
    WebhookRequest,
)
from integrations.alerts.sns import (
    AWS_CERT_HOST_PATTERN,
    SnsSettings,
    SnsSource,
    build,
    parse_alarm,
)
from integrations.alerts.source import UNEXPECTED_REASON

TOPIC = "arn:aws:sns:eu-west-1:123456789012:ops-alarms"
OTHER_TOPIC = "arn:aws:sns:eu-west-1:123456789012:marketing"
LOCAL_HOSTS = r"^(127\.0\.0\.1|localhost)$"
CERT_PATH = "/SimpleNotificationService-01d088a6f77103d0fe307c0069e40ed6.pem"


# -- a small PKI, generated once per module ----------------------------------------------------------------------


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _certificate(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: x509.Name,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool = False,
    san: list[x509.GeneralName] | None = None,
    valid: tuple[datetime, datetime] | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    not_before, not_after = valid or (now - timedelta(days=1), now + timedelta(days=30))
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    else:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
        builder = builder.add_extension(x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


@dataclass
class Pki:
    """The CA the source trusts, the TLS server's certificate, SNS's signing key and an attacker's key."""

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    signing_key: rsa.RSAPrivateKey
    signing_pem: bytes
    attacker_key: rsa.RSAPrivateKey
    expired_pem: bytes


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    folder = tmp_path_factory.mktemp("pki")
    ca_key, server_key, signing_key, attacker_key = _key(), _key(), _key(), _key()
    ca_name = _name("chatops test CA")
    ca = _certificate("chatops test CA", ca_key, ca_name, ca_key, ca=True)
    server = _certificate(
        "localhost",
        server_key,
        ca_name,
        ca_key,
        san=[x509.DNSName("localhost"), x509.IPAddress(IPv4Address("127.0.0.1"))],
    )
    signing = _certificate("sns.amazonaws.com", signing_key, ca_name, ca_key)
    past = datetime.now(UTC) - timedelta(days=400)
    expired = _certificate("sns.amazonaws.com", signing_key, ca_name, ca_key, valid=(past, past + timedelta(days=30)))
    (folder / "ca.pem").write_bytes(_pem(ca))
    (folder / "server.pem").write_bytes(_pem(server))
    (folder / "server-key.pem").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return Pki(
        ca_file=folder / "ca.pem",
        server_cert_file=folder / "server.pem",
        server_key_file=folder / "server-key.pem",
        signing_key=signing_key,
        signing_pem=_pem(signing),
        attacker_key=attacker_key,
        expired_pem=_pem(expired),
    )


# -- the local HTTPS server playing sns.<region>.amazonaws.com ----------------------------------------------------


@dataclass
class CertServer:
    """Serves the signing certificate (and some broken variants) over TLS, counting fetches per path."""

    pki: Pki
    origin: str = ""
    fetches: Counter[str] = field(default_factory=Counter)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str = CERT_PATH, *, host: str = "127.0.0.1") -> str:
        return self.origin.replace("127.0.0.1", host) + path

    async def serve(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        self.fetches[path] += 1
        if path.endswith("-missing.pem"):
            return web.Response(status=404)
        if path.endswith("-garbage.pem"):
            return web.Response(body=b"-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n")
        if path.endswith("-expired.pem"):
            return web.Response(body=self.pki.expired_pem)
        if path.endswith("-huge.pem"):
            return web.Response(body=self.pki.signing_pem + b"\n" * 70_000)
        if path.endswith("-chunked.pem"):  # the PEM in small pieces, as a slow link would deliver it
            response = web.StreamResponse()
            await response.prepare(request)
            for start in range(0, len(self.pki.signing_pem), 100):
                await response.write(self.pki.signing_pem[start : start + 100])
                await asyncio.sleep(0.001)
            await response.write_eof()
            return response
        if path.endswith("-slow.pem"):
            await self.release.wait()
            return web.Response(status=503)
        if request.query.get("Action") in ("ConfirmSubscription", "Unsubscribe"):
            return web.Response(text="<ConfirmSubscriptionResponse/>")
        await asyncio.sleep(0.01)  # so that concurrent requests overlap
        return web.Response(body=self.pki.signing_pem, content_type="application/x-x509-ca-cert")


@dataclass
class Env:
    server: CertServer
    http: aiohttp.ClientSession
    pki: Pki

    def source(self, **overrides: Any) -> SnsSource:
        values: dict[str, Any] = {
            "topic_arns": [TOPIC],
            "cert_host_pattern": LOCAL_HOSTS,
            "ca_bundle_path": str(self.pki.ca_file),
            "cert_timeout": "30s",
        }
        values.update(overrides)
        return build(SnsSettings(**values), environ={}, http=self.http)


@pytest.fixture
async def env(pki: Pki) -> AsyncIterator[Env]:
    server = CertServer(pki)
    app = web.Application()
    app.router.add_get("/{tail:.*}", server.serve)
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls.load_cert_chain(pki.server_cert_file, pki.server_key_file)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    server.origin = f"https://127.0.0.1:{runner.addresses[0][1]}"
    http = aiohttp.ClientSession()
    try:
        yield Env(server=server, http=http, pki=pki)
    finally:
        await http.close()
        server.release.set()
        await runner.cleanup()


# -- messages signed as SNS signs them ----------------------------------------------------------------------------


def string_to_sign(message: dict[str, Any]) -> bytes:
    """AWS's documented string to sign, written out independently of the code under test."""
    if message["Type"] == "Notification":
        keys = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        keys = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{key}\n{message[key]}\n" for key in keys if message.get(key) is not None).encode()


def signed(message: dict[str, Any], key: rsa.RSAPrivateKey, version: str = "1") -> dict[str, Any]:
    message = dict(message, SignatureVersion=version)
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    message["Signature"] = base64.b64encode(key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)).decode()
    return message


def sns_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


ALARM: dict[str, Any] = {
    "AlarmName": "web-5xx-rate",
    "AlarmDescription": "5xx responses above 2% on the public ALB. severity=critical service=web",
    "AWSAccountId": "123456789012",
    "AlarmConfigurationUpdatedTimestamp": "2024-04-30T09:12:44.091+0000",
    "NewStateValue": "ALARM",
    "NewStateReason": "Threshold Crossed: 2 out of the last 2 datapoints [4.2 (01/05/24 11:58:00), 3.1 (01/05/24 "
    "11:57:00)] were greater than the threshold (2.0) (minimum 2 datapoints for OK -> ALARM "
    "transition).",
    "StateChangeTime": "2024-05-01T11:59:30.512+0000",
    "Region": "EU (Ireland)",
    "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:web-5xx-rate",
    "OldStateValue": "OK",
    "OKActions": ["arn:aws:sns:eu-west-1:123456789012:ops-alarms"],
    "AlarmActions": ["arn:aws:sns:eu-west-1:123456789012:ops-alarms"],
    "InsufficientDataActions": [],
    "Trigger": {
        "MetricName": "HTTPCode_ELB_5XX_Count",
        "Namespace": "AWS/ApplicationELB",
        "StatisticType": "Statistic",
        "Statistic": "SUM",
        "Unit": None,
        "Dimensions": [{"value": "app/public-web/50dc6c495c0c9188", "name": "LoadBalancer"}],
        "Period": 60,
        "EvaluationPeriods": 2,
        "DatapointsToAlarm": 2,
        "ComparisonOperator": "GreaterThanThreshold",
        "Threshold": 2.0,
        "TreatMissingData": "missing",
        "EvaluateLowSampleCountPercentile": "",
    },
}


def alarm(**changes: Any) -> dict[str, Any]:
    return {**json.loads(json.dumps(ALARM)), **changes}


def notification(
    env: Env,
    message: dict[str, Any] | str | None = None,
    *,
    version: str = "1",
    key: rsa.RSAPrivateKey | None = None,
    subject: str | None = 'ALARM: "web-5xx-rate" in EU (Ireland)',
    timestamp: datetime | None = None,
    cert_url: str | None = None,
    topic: str = TOPIC,
    message_id: str = "b7d3c5e2-1f5e-5a0b-9c7a-3f1e0d8a6b21",
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message or ALARM),
        "Timestamp": sns_time(timestamp or datetime.now(UTC)),
        "SigningCertURL": cert_url or env.server.url(),
        "UnsubscribeURL": f"{env.server.origin}/?Action=Unsubscribe&SubscriptionArn={TOPIC}:0f3c9a1e",
    }
    if subject is not None:
        body["Subject"] = subject
    return signed(body, key or env.pki.signing_key, version)


def confirmation(
    env: Env, kind: str = "SubscriptionConfirmation", *, subscribe_url: str | None = None, version: str = "1"
) -> dict[str, Any]:
    token = "2336412f37fb687f5d51e6e2425dacbba2b6f1ec4c1a6b9f"
    body = {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": token,
        "TopicArn": TOPIC,
        "Message": f"You have chosen to subscribe to the topic {TOPIC}.\nTo confirm the subscription, visit the "
        "SubscribeURL included in this message.",
        "SubscribeURL": subscribe_url
        or f"{env.server.origin}/?Action=ConfirmSubscription&TopicArn={TOPIC}&Token={token}",
        "Timestamp": sns_time(datetime.now(UTC)),
        "SigningCertURL": env.server.url(),
    }
    return signed(body, env.pki.signing_key, version)


def request(body: dict[str, Any] | bytes, *, kind: str | None = None, now: datetime | None = None) -> WebhookRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "text/plain; charset=UTF-8", "User-Agent": "Amazon Simple Notification Service Agent"}
    message_type = kind or (body.get("Type") if isinstance(body, dict) else None)
    if message_type:
        headers["x-amz-sns-message-type"] = message_type
    if isinstance(body, dict):
        headers["x-amz-sns-message-id"] = str(body.get("MessageId"))
        headers["x-amz-sns-topic-arn"] = str(body.get("TopicArn"))
    return WebhookRequest(headers=headers, body=raw, remote="54.240.197.1", now=now or datetime.now(UTC))


async def rejected(source: SnsSource, body: dict[str, Any] | bytes, **kwargs: Any) -> WebhookRejected:
    with pytest.raises(WebhookRejected) as caught:
        await source.receive(request(body, **kwargs))
    return caught.value


async def one_alert(source: SnsSource, body: dict[str, Any]) -> Alert:
    result = await source.receive(request(body))
    assert isinstance(result, Accepted)
    (alert,) = result.alerts
    return alert


# -- good messages --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "2"])
async def test_a_signed_alarm_becomes_an_alert(env: Env, version: str) -> None:
    source = env.source()
    assert isinstance(source, AlertSource) and source.name == "sns"
    alert = await one_alert(source, notification(env, version=version))
    assert alert.source == "sns"
    assert alert.status == "firing"
    assert alert.title == "web-5xx-rate"
    assert alert.severity == "critical"  # severity=critical in AlarmDescription
    assert alert.summary.startswith("Threshold Crossed: 2 out of the last 2 datapoints")
    assert alert.labels == {
        "alertname": "web-5xx-rate",
        "severity": "critical",
        "service": "web",
        "aws_account": "123456789012",
        "aws_region": "eu-west-1",
        "namespace": "AWS/ApplicationELB",
        "metric": "HTTPCode_ELB_5XX_Count",
        "LoadBalancer": "app/public-web/50dc6c495c0c9188",
    }
    assert alert.annotations["description"] == ALARM["AlarmDescription"]
    assert alert.annotations["state"] == "OK -> ALARM"
    assert alert.annotations["threshold"] == "GreaterThanThreshold 2.0"
    assert alert.annotations["topic"] == TOPIC
    assert alert.starts_at == datetime(2024, 5, 1, 11, 59, 30, 512000, tzinfo=UTC)
    assert alert.ends_at is None
    assert alert.links == {
        "source": "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#alarmsV2:alarm/web-5xx-rate"
    }
    assert len(alert.fingerprint) == 64
    assert Alert.from_json(alert.to_json()) == alert


async def test_ok_resolves_the_same_alert_and_insufficient_data_is_info(env: Env) -> None:
    source = env.source()
    fired = await one_alert(source, notification(env))
    resolved = await one_alert(
        source,
        notification(
            env, alarm(NewStateValue="OK", OldStateValue="ALARM", StateChangeTime="2024-05-01T12:20:00.000+0000")
        ),
    )
    unknown = await one_alert(source, notification(env, alarm(NewStateValue="INSUFFICIENT_DATA")))
    assert resolved.fingerprint == fired.fingerprint == unknown.fingerprint
    assert (resolved.status, resolved.ends_at) == ("resolved", datetime(2024, 5, 1, 12, 20, tzinfo=UTC))
    assert (unknown.status, unknown.severity, unknown.ends_at) == ("firing", "info", None)


async def test_a_redelivered_notification_is_the_same_alert(env: Env) -> None:
    source = env.source()
    body = notification(env)
    assert await one_alert(source, body) == await one_alert(source, body)  # SNS delivers at least once


async def test_the_subject_is_signed_only_when_present(env: Env) -> None:
    source = env.source()
    assert (await one_alert(source, notification(env, subject=None))).title == "web-5xx-rate"
    body = notification(env)
    del body["Subject"]  # removing a signed field breaks the signature
    assert (await rejected(source, body)).reason == "bad signature"


@pytest.mark.parametrize(
    ("name", "description", "default", "expected"),
    [
        ("db-P1-replica-lag", "", "warning", "critical"),
        ("CRITICAL disk /var", None, "warning", "critical"),
        ("noncritical-queue-depth", "", "warning", "warning"),  # "critical" inside another word does not count
        ("app1-latency", "", "info", "info"),  # nor does "p1" inside "app1"
        ("queue-depth", "Backlog growing. Severity: low", "warning", "info"),
        ("queue-depth", "severity=P2 service=billing", "info", "warning"),
    ],
)
async def test_severity_conventions(env: Env, name: str, description: str | None, default: str, expected: str) -> None:
    message = alarm(AlarmName=name, AlarmDescription=description)
    alert = await one_alert(env.source(default_severity=default), notification(env, message))
    assert alert.severity == expected


async def test_subscription_confirmation_after_the_signature_checks(env: Env) -> None:
    source = env.source()
    for version in ("1", "2"):
        body = confirmation(env, version=version)
        result = await source.receive(request(body))
        assert result == Confirmation(url=body["SubscribeURL"])
    async with env.http.get(result.url, ssl=ssl.create_default_context(cafile=str(env.pki.ca_file))) as response:
        assert response.status == 200  # what the pipeline does next

    forged = confirmation(env)
    forged["SubscribeURL"] = "https://127.0.0.1:1/?Action=ConfirmSubscription&steal=1"
    assert (await rejected(source, forged)).reason == "bad signature"
    elsewhere = confirmation(env, subscribe_url="https://sns.attacker.example/?Action=ConfirmSubscription")
    problem = await rejected(source, elsewhere)
    assert problem.status == 400 and "SubscribeURL" in problem.reason


async def test_unsubscribe_confirmation_is_acknowledged(env: Env) -> None:
    result = await env.source().receive(request(confirmation(env, "UnsubscribeConfirmation")))
    assert result == Accepted(alerts=(), reply="unsubscribe confirmation noted")


# -- forgeries ------------------------------------------------------------------------------------------------------


async def test_a_tampered_message_fails(env: Env) -> None:
    body = notification(env)
    body["Message"] = json.dumps(alarm(NewStateValue="OK"))
    problem = await rejected(env.source(), body)
    assert (problem.status, problem.reason) == (401, "bad signature")


@pytest.mark.parametrize("version", ["1", "2"])
async def test_another_key_fails(env: Env, version: str) -> None:
    body = notification(env, key=env.pki.attacker_key, version=version)
    assert (await rejected(env.source(), body)).reason == "bad signature"


async def test_a_signature_version_swap_fails(env: Env) -> None:
    body = notification(env, version="1")
    body["SignatureVersion"] = "2"
    assert (await rejected(env.source(), body)).reason == "bad signature"
    body["SignatureVersion"] = "3"
    assert (await rejected(env.source(), body)).reason == 'SignatureVersion must be "1" or "2"'
    body = notification(env)
    body["Signature"] = "not base64!"
    assert (await rejected(env.source(), body)).reason == "bad signature: Signature is not base64"


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://sns.attacker.example{port}" + CERT_PATH,
        "https://127.0.0.1.attacker.example{port}" + CERT_PATH,
        "https://user@127.0.0.1{port}" + CERT_PATH,
        "http://127.0.0.1{port}" + CERT_PATH,
        "https://127.0.0.1:notaport" + CERT_PATH,
        "file:///etc/passwd",
    ],
)
async def test_a_certificate_url_off_the_trusted_hosts_is_never_fetched(env: Env, cert_url: str) -> None:
    port = ":" + env.server.origin.rsplit(":", 1)[1]
    body = notification(env, key=env.pki.attacker_key, cert_url=cert_url.format(port=port))
    problem = await rejected(env.source(), body)
    assert problem.status == 401 and "SigningCertURL" in problem.reason
    assert sum(env.server.fetches.values()) == 0


def test_the_default_pattern_is_awss() -> None:
    source = SnsSource(SnsSettings(topic_arns=[TOPIC]), http=None, ssl_context=None)
    assert source.trusted_url("https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem")
    assert source.trusted_url("https://sns.cn-north-1.amazonaws.com.cn/SimpleNotificationService-abc.pem")
    assert not source.trusted_url("https://sns.us-east-1.amazonaws.com.attacker.example/x.pem")
    assert not source.trusted_url("https://evilsns.us-east-1.amazonaws.com/x.pem")
    assert not source.trusted_url("http://sns.us-east-1.amazonaws.com/x.pem")
    assert SnsSettings(topic_arns=[TOPIC]).cert_host_pattern == AWS_CERT_HOST_PATTERN


async def test_an_unknown_topic_is_forbidden_before_any_fetch(env: Env) -> None:
    problem = await rejected(env.source(), notification(env, topic=OTHER_TOPIC))
    assert (problem.status, problem.reason) == (403, "TopicArn is not one of the configured topic_arns")
    assert sum(env.server.fetches.values()) == 0


async def test_old_and_future_messages_are_refused(env: Env) -> None:
    now = datetime.now(UTC)
    source = env.source()
    problem = await rejected(source, notification(env, timestamp=now - timedelta(hours=1, seconds=5)))
    assert (problem.status, problem.reason) == (401, "stale message: Timestamp is more than 1h old")
    problem = await rejected(source, notification(env, timestamp=now + timedelta(minutes=10)))
    assert problem.reason == "Timestamp is in the future"
    assert sum(env.server.fetches.values()) == 0
    fresh_enough = notification(env, timestamp=now - timedelta(minutes=59))
    assert (await one_alert(source, fresh_enough)).title == "web-5xx-rate"
    strict = env.source(max_age="5m")
    assert (await rejected(strict, fresh_enough)).reason == "stale message: Timestamp is more than 5m old"


async def test_the_message_type_header_must_match(env: Env) -> None:
    body = notification(env)
    problem = await rejected(env.source(), json.dumps(body).encode())
    assert (problem.status, problem.reason) == (400, "missing x-amz-sns-message-type header")
    problem = await rejected(env.source(), body, kind="SubscriptionConfirmation")
    assert problem.reason == "x-amz-sns-message-type does not match the message's Type"
    # A signed confirmation relabelled as a notification: the signed fields differ, so the signature fails.
    relabelled = confirmation(env)
    relabelled["Type"] = "Notification"
    relabelled["Subject"] = None
    relabelled["Message"] = json.dumps(ALARM)
    assert (await rejected(env.source(), relabelled)).reason == "bad signature"


# -- the certificate: cache, and fetch failures ----------------------------------------------------------------------


async def test_the_certificate_is_fetched_once_per_url(env: Env) -> None:
    source = env.source()
    for index in range(3):
        await one_alert(source, notification(env, message_id=f"m-{index}"))
    assert env.server.fetches == {CERT_PATH: 1}
    other = CERT_PATH.replace(".pem", "-rotated.pem")
    await one_alert(source, notification(env, cert_url=env.server.url(other)))
    assert env.server.fetches == {CERT_PATH: 1, other: 1}


async def test_concurrent_messages_share_one_fetch(env: Env) -> None:
    source = env.source()
    results = await asyncio.gather(*(source.receive(request(notification(env, message_id=f"m-{i}"))) for i in range(8)))
    assert all(isinstance(result, Accepted) for result in results)
    assert env.server.fetches == {CERT_PATH: 1}


async def test_the_cache_is_bounded(env: Env) -> None:
    settings = SnsSettings(topic_arns=[TOPIC], cert_host_pattern=LOCAL_HOSTS, ca_bundle_path=str(env.pki.ca_file))
    context = ssl.create_default_context(cafile=str(env.pki.ca_file))
    source = SnsSource(settings, http=env.http, ssl_context=context, cert_cache_size=1)
    first, second = CERT_PATH, CERT_PATH.replace(".pem", "-b.pem")
    for path in (first, first, second, first):
        await one_alert(source, notification(env, cert_url=env.server.url(path)))
    assert env.server.fetches == {first: 2, second: 1}


async def test_a_certificate_arriving_in_pieces_is_read_whole(env: Env) -> None:
    body = notification(env, cert_url=env.server.url(CERT_PATH.replace(".pem", "-chunked.pem")))
    assert (await one_alert(env.source(), body)).title == "web-5xx-rate"


@pytest.mark.parametrize("suffix", ["-missing.pem", "-garbage.pem", "-huge.pem", "-slow.pem"])
async def test_an_unavailable_certificate_asks_sns_to_retry(env: Env, suffix: str) -> None:
    path = CERT_PATH.replace(".pem", suffix)
    # A short timeout only where running out of time is the point: a loaded machine must not fail the others.
    source = env.source(cert_timeout="500ms") if suffix == "-slow.pem" else env.source()
    for _ in range(2):
        problem = await rejected(source, notification(env, cert_url=env.server.url(path)))
        assert (problem.status, problem.reason) == (503, "the signing certificate could not be fetched; retry later")
    assert env.server.fetches[path] == 2  # failures are not cached


async def test_tls_is_verified_against_the_configured_cas_only(env: Env) -> None:
    system_trust = env.source(ca_bundle_path=None)  # our local CA is not in the system's store
    problem = await rejected(system_trust, notification(env))
    assert problem.status == 503
    by_name = notification(env, cert_url=env.server.url(host="localhost"))  # the server's cert names localhost too
    assert (await one_alert(env.source(), by_name)).title == "web-5xx-rate"


async def test_an_expired_signing_certificate_fails(env: Env) -> None:
    body = notification(env, cert_url=env.server.url(CERT_PATH.replace(".pem", "-expired.pem")))
    assert (await rejected(env.source(), body)).reason == "the signing certificate is not valid now"


# -- configuration --------------------------------------------------------------------------------------------------


def test_settings_validation(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="at least 1 item"):
        SnsSettings(topic_arns=[])
    with pytest.raises(ValidationError, match="is not an SNS topic ARN"):
        SnsSettings(topic_arns=["ops-alarms"])
    with pytest.raises(ValidationError, match="is not a regular expression"):
        SnsSettings(topic_arns=[TOPIC], cert_host_pattern="(")
    with pytest.raises(ValidationError, match="must be longer than 0s"):
        SnsSettings(topic_arns=[TOPIC], max_age="0s")
    SnsSettings(topic_arns=["arn:aws-cn:sns:cn-north-1:123456789012:alarms.fifo"])
    missing = SnsSettings(topic_arns=[TOPIC], ca_bundle_path=str(tmp_path / "nope.pem"))
    with pytest.raises(SourceConfigError, match=r"nope\.pem"):
        build(missing, environ={}, http=None)
    (tmp_path / "junk.pem").write_text("not a certificate")
    junk = SnsSettings(topic_arns=[TOPIC], ca_bundle_path=str(tmp_path / "junk.pem"))
    with pytest.raises(SourceConfigError, match=r"junk\.pem: cannot load it"):
        build(junk, environ={}, http=None)


# -- malformed messages ---------------------------------------------------------------------------------------------


async def test_malformed_envelopes(env: Env) -> None:
    source = env.source()
    assert (
        await rejected(source, b"Type=Notification", kind="Notification")
    ).reason == "not JSON: Expecting value at line 1 column 1"
    body = notification(env)
    del body["MessageId"]
    assert (await rejected(source, body)).reason == "MessageId is missing"
    body = notification(env)
    body["Timestamp"] = 1714564770
    assert (await rejected(source, body)).reason == "Timestamp must be a string"
    body = notification(env)
    body["Timestamp"] = "yesterday"
    assert (await rejected(source, body)).reason == "Timestamp must be an RFC 3339 time like 2024-05-01T12:00:00Z"
    body = notification(env)
    body["Type"] = "Gossip"
    problem = await rejected(source, body, kind="Gossip")
    assert problem.reason == "Type must be SubscriptionConfirmation, Notification or UnsubscribeConfirmation"


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ("Disk is full on db1", "Message is not a CloudWatch alarm: not JSON: Expecting value at line 1 column 1"),
        ('["ALARM"]', "Message must be an object"),
        ('{"NewStateValue": "ALARM"}', "Message.AlarmName is missing: not a CloudWatch alarm"),
        (json.dumps(alarm(NewStateValue="PENDING")), "Message.NewStateValue must be ALARM, OK or INSUFFICIENT_DATA"),
        (json.dumps(alarm(Trigger=[])), "Message.Trigger must be an object"),
        (json.dumps(alarm(Trigger={"Dimensions": {"name": "x"}})), "Message.Trigger.Dimensions must be a list"),
        (
            json.dumps(alarm(Trigger={"Dimensions": [{"name": "x", "value": 3}]})),
            "Message.Trigger.Dimensions[0].value must be a string",
        ),
        (
            json.dumps(alarm(StateChangeTime="soon")),
            ("Message.StateChangeTime must be an RFC 3339 time like 2024-05-01T12:00:00Z"),
        ),
    ],
)
async def test_a_signed_message_that_is_not_an_alarm_gets_400(env: Env, message: str, reason: str) -> None:
    problem = await rejected(env.source(), notification(env, message))
    assert (problem.status, problem.reason) == (400, reason)


def test_a_composite_alarm_without_trigger_or_arn() -> None:
    moment = datetime(2024, 5, 1, 12, tzinfo=UTC)
    message = {
        "AlarmName": "checkout-degraded",
        "NewStateValue": "ALARM",
        "AWSAccountId": "123456789012",
        "Region": "EU (Ireland)",
        "AlarmRule": "ALARM(web-5xx-rate) OR ALARM(web-latency)",
    }
    alert = parse_alarm(json.dumps(message), topic_arn=TOPIC, timestamp=moment)
    assert alert.starts_at == moment  # no StateChangeTime: the SNS Timestamp
    assert alert.labels["aws_region"] == "EU (Ireland)"
    assert alert.links == {}
    assert alert.summary == "checkout-degraded"
    again = parse_alarm(json.dumps(message), topic_arn=TOPIC, timestamp=moment + timedelta(minutes=5))
    assert again.fingerprint == alert.fingerprint


# -- anything at all ------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=25,
)
alarm_like = st.fixed_dictionaries(
    {},
    optional={
        "AlarmName": st.text(max_size=30) | json_values,
        "AlarmDescription": st.text(max_size=40).map(lambda t: t + " severity=" + t) | json_values,
        "NewStateValue": st.sampled_from(["ALARM", "OK", "INSUFFICIENT_DATA"]) | json_values,
        "StateChangeTime": st.sampled_from(["2024-05-01T11:59:30.512+0000", "0001-01-01T00:00:00Z"]) | json_values,
        "AlarmArn": st.sampled_from(
            ["arn:aws:cloudwatch:eu-west-1:123456789012:alarm:x", "arn:aws-xx:cloudwatch:eu-west-1:123456789012:alarm:"]
        )
        | json_values,
        "Trigger": st.fixed_dictionaries(
            {},
            optional={
                "Dimensions": st.lists(
                    st.fixed_dictionaries({"name": st.text(max_size=5), "value": st.text(max_size=5)})
                )
                | json_values,
                "Threshold": json_values,
                "ComparisonOperator": json_values,
                "MetricName": json_values,
            },
        )
        | json_values,
        "Region": json_values,
        "AWSAccountId": json_values,
        "NewStateReason": json_values,
        "OldStateValue": json_values,
    },
)


@settings(
    max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    message=st.text(max_size=100) | json_values.map(json.dumps) | alarm_like.map(json.dumps),
    version=st.sampled_from(["1", "2"]),
)
async def test_any_signed_message_is_accepted_or_rejected_never_a_crash(env: Env, message: str, version: str) -> None:
    try:
        result = await env.source().receive(request(notification(env, message, version=version)))
    except WebhookRejected as problem:
        assert problem.status == 400, problem
        assert problem.reason != UNEXPECTED_REASON
    else:
        assert isinstance(result, Accepted)
        assert Alert.from_json(result.alerts[0].to_json()) == result.alerts[0]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    body=st.binary(max_size=300)
    | json_values.map(lambda v: json.dumps(v).encode())
    | st.fixed_dictionaries(
        {"Type": st.sampled_from(["Notification", "SubscriptionConfirmation"]) | json_values},
        optional={
            key: st.text(max_size=20) | json_values
            for key in (
                "Message",
                "MessageId",
                "Subject",
                "Timestamp",
                "TopicArn",
                "Token",
                "SubscribeURL",
                "SignatureVersion",
                "Signature",
                "SigningCertURL",
            )
        },
    ).map(lambda v: json.dumps(v).encode()),
    kind=st.none() | st.sampled_from(["Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"]),
)
async def test_any_body_is_rejected_never_a_crash(env: Env, body: bytes, kind: str | None) -> None:
    with pytest.raises(WebhookRejected) as caught:
        await env.source().receive(request(body, kind=kind))
    assert caught.value.status in (400, 401, 403)
    assert caught.value.reason != UNEXPECTED_REASON
    assert sum(env.server.fetches.values()) == 0
