"""CloudWatch alarms delivered by Amazon SNS to an HTTPS subscription (`https://chatops.example.com/alerts/sns`).

SNS POSTs JSON (with `Content-Type: text/plain`) and names its kind in `x-amz-sns-message-type`:
`SubscriptionConfirmation`, `Notification` or `UnsubscribeConfirmation`. Every message is checked as AWS documents
before anything else is believed:

1. `TopicArn` must be one of `topic_arns` (403 otherwise), and `Timestamp` no older than `max_age` (default 1h).
2. `SigningCertURL` must be https on a host matching `cert_host_pattern` (`sns.<region>.amazonaws.com[.cn]`). The
   certificate is fetched over verified TLS (trusting `ca_bundle_path` when set, else the system's CAs) with a short
   timeout, and cached per URL.
3. `Signature` (base64) must verify with the certificate's RSA key over the string to sign: `Name\\nValue\\n` for
   Message, MessageId, Subject (only when present), Timestamp, TopicArn, Type of a Notification, or Message,
   MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type of a (Un)SubscriptionConfirmation; SHA1withRSA for
   SignatureVersion "1", SHA256withRSA for "2".

A SubscriptionConfirmation then becomes `Confirmation(SubscribeURL)` (its host must match the same pattern), an
UnsubscribeConfirmation is acknowledged, and a Notification's `Message` is read as a CloudWatch alarm:

- `NewStateValue` ALARM is firing, OK is resolved, and INSUFFICIENT_DATA is firing with severity info (the alarm
  cannot tell whether things are fine: worth seeing, not worth a page; OK resolves it as usual).
- The fingerprint is derived from `AlarmArn` (else account, region and name), so every state change of one alarm
  is the same alert.
- Severity: a `severity=<level>` tag in `AlarmDescription` (e.g. "Disk almost full. severity=critical"), else
  critical when the alarm name has the word "critical" or "p1" in it, else `default_severity` (warning). A
  `service=<name>` tag in the description sets the `service` label.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import re
import ssl
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

import aiohttp
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pydantic import AfterValidator, Field, field_validator

from integrations.alerts.labels import make_fingerprint, normalise_severity
from integrations.alerts.model import MAX_SUMMARY_CHARS, Alert, Severity
from integrations.alerts.payload import check_size, field_path, load_json, optional_string, require_object
from integrations.alerts.settings import PositiveDuration, SourceConfigError
from integrations.alerts.source import Accepted, Confirmation, WebhookRejected, WebhookRequest, accepted, rejects_only
from integrations.alerts.text import clean, clip, make_title
from integrations.alerts.times import parse_time
from integrations.types import StrictModel, describe_value, format_duration

log = logging.getLogger(__name__)

NAME = "sns"
AWS_CERT_HOST_PATTERN = r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$"
"""Hosts SNS signing certificates (and subscription confirmations) come from."""

MESSAGE_TYPES = ("SubscriptionConfirmation", "Notification", "UnsubscribeConfirmation")
NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
"""What a Notification's signature covers, in order (Subject only when present)."""
CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
"""What a (Un)SubscriptionConfirmation's signature covers, in order."""

_HASHES: dict[str, type[hashes.HashAlgorithm]] = {"1": hashes.SHA1, "2": hashes.SHA256}
_MAX_CERT_BYTES = 64 * 1024
_FUTURE_SKEW = timedelta(minutes=5)
_TOPIC_ARN = re.compile(r"arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?")
_ALARM_ARN = re.compile(r"arn:(aws[a-z-]*):cloudwatch:([a-z0-9-]+):([0-9]{12}):alarm:(.+)")
_TAG = re.compile(r"(?<![A-Za-z0-9_])(severity|service)\s*[=:]\s*([A-Za-z0-9._/-]+)", re.IGNORECASE)
_CRITICAL_NAME = re.compile(r"(?<![a-z0-9])(critical|p1)(?![a-z0-9])", re.IGNORECASE)
_CONSOLE_DOMAINS = {
    "aws": "console.aws.amazon.com",
    "aws-cn": "console.amazonaws.cn",
    "aws-us-gov": "console.amazonaws-us-gov.com",
}
_STATES: dict[str, Literal["firing", "resolved"]] = {"ALARM": "firing", "OK": "resolved", "INSUFFICIENT_DATA": "firing"}


def _topic_arn(value: str) -> str:
    if not _TOPIC_ARN.fullmatch(value):
        raise ValueError(f"{describe_value(value)} is not an SNS topic ARN (arn:aws:sns:<region>:<account>:<name>)")
    return value


class SnsSettings(StrictModel):
    """`alerts: {sources: {sns: {topic_arns: ["arn:aws:sns:eu-west-1:123456789012:alarms"]}}}`."""

    topic_arns: list[Annotated[str, AfterValidator(_topic_arn)]] = Field(min_length=1)
    cert_host_pattern: str = Field(AWS_CERT_HOST_PATTERN, description="Regex the certificate URL's host must match.")
    ca_bundle_path: str | None = Field(
        None, description="PEM file of CAs trusted to serve the certificate (default: the system's CAs)."
    )
    max_age: PositiveDuration = timedelta(hours=1)
    cert_timeout: PositiveDuration = timedelta(seconds=5)
    default_severity: Severity = "warning"

    @field_validator("cert_host_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"is not a regular expression: {error}") from None
        return value


class _CertificateUnavailable(Exception):
    """The signing certificate could not be fetched or read (the message may be fine: SNS should retry)."""


class SnsSource:
    """Takes SNS HTTPS deliveries of CloudWatch alarms, verifying each message's signature."""

    name = NAME

    def __init__(
        self,
        settings: SnsSettings,
        *,
        http: aiohttp.ClientSession,
        ssl_context: ssl.SSLContext | None,
        cert_cache_size: int = 32,
    ) -> None:
        self._settings = settings
        self._http = http
        self._ssl: ssl.SSLContext | bool = ssl_context if ssl_context is not None else True
        self._topics = frozenset(settings.topic_arns)
        self._host_pattern = re.compile(settings.cert_host_pattern)
        self._certs: OrderedDict[str, x509.Certificate] = OrderedDict()
        self._cache_size = max(1, cert_cache_size)
        self._pending: dict[str, asyncio.Future[x509.Certificate]] = {}

    @rejects_only
    async def receive(self, request: WebhookRequest) -> Accepted | Confirmation:
        """Checks topic, age, certificate URL and signature, then confirms, acknowledges or parses the alarm."""
        check_size(request.body)
        message = read_envelope(load_json(request.body), request.headers.get("x-amz-sns-message-type"))
        if message["TopicArn"] not in self._topics:
            raise WebhookRejected(403, "TopicArn is not one of the configured topic_arns")
        timestamp = parse_time(message["Timestamp"], "Timestamp")
        if timestamp is None or request.now - timestamp > self._settings.max_age:
            age = format_duration(self._settings.max_age)
            raise WebhookRejected(401, f"stale message: Timestamp is more than {age} old")
        if timestamp - request.now > _FUTURE_SKEW:
            raise WebhookRejected(401, "Timestamp is in the future")
        cert_url = message["SigningCertURL"]
        if not self.trusted_url(cert_url):
            raise WebhookRejected(401, "SigningCertURL must be an https URL on a host matching cert_host_pattern")
        try:
            certificate = await self._certificate(cert_url)
        except _CertificateUnavailable as error:
            log.warning("SNS signing certificate unavailable: %s", error)
            raise WebhookRejected(503, "the signing certificate could not be fetched; retry later") from None
        verify_signature(message, certificate, request.now)
        kind = message["Type"]
        if kind == "SubscriptionConfirmation":
            if not self.trusted_url(message["SubscribeURL"]):
                raise WebhookRejected(400, "SubscribeURL must be an https URL on a host matching cert_host_pattern")
            return Confirmation(url=message["SubscribeURL"])
        if kind == "UnsubscribeConfirmation":
            return Accepted(alerts=(), reply="unsubscribe confirmation noted")
        alert = parse_alarm(
            message["Message"],
            topic_arn=message["TopicArn"],
            timestamp=timestamp,
            default_severity=self._settings.default_severity,
        )
        return accepted([alert])

    def trusted_url(self, url: str) -> bool:
        """Whether `url` is https (no credentials in it) on a host matching `cert_host_pattern`."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        except ValueError:
            return False
        host = parts.hostname
        return (
            parts.scheme == "https"
            and host is not None
            and parts.username is None
            and parts.password is None
            and self._host_pattern.fullmatch(host) is not None
        )

    async def _certificate(self, url: str) -> x509.Certificate:
        cached = self._certs.get(url)
        if cached is not None:
            self._certs.move_to_end(url)
            return cached
        pending = self._pending.get(url)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch(url))
            self._pending[url] = pending
            pending.add_done_callback(lambda done: self._fetched(url, done))
        return await asyncio.shield(pending)  # one caller giving up does not cancel the fetch others wait for

    def _fetched(self, url: str, done: asyncio.Future[x509.Certificate]) -> None:
        self._pending.pop(url, None)
        if done.cancelled() or done.exception() is not None:
            return
        self._certs[url] = done.result()
        self._certs.move_to_end(url)
        while len(self._certs) > self._cache_size:
            self._certs.popitem(last=False)

    async def _fetch(self, url: str) -> x509.Certificate:
        timeout = aiohttp.ClientTimeout(total=self._settings.cert_timeout.total_seconds())
        try:
            async with self._http.get(url, ssl=self._ssl, timeout=timeout, allow_redirects=False) as response:
                if response.status != 200:
                    raise _CertificateUnavailable(f"the certificate URL answered {response.status}")
                data = b""
                async for chunk in response.content.iter_chunked(16 * 1024):
                    data += chunk
                    if len(data) > _MAX_CERT_BYTES:
                        raise _CertificateUnavailable("the certificate is too large")
        except TimeoutError:
            raise _CertificateUnavailable("timed out") from None
        except aiohttp.ClientError as error:
            raise _CertificateUnavailable(type(error).__name__) from None
        try:
            return x509.load_pem_x509_certificate(data)
        except ValueError:
            raise _CertificateUnavailable("the answer is not a PEM certificate") from None


def read_envelope(data: Any, header_type: str | None) -> dict[str, str]:
    """The SNS message's string fields (Subject only when present), checked for shape; 400 naming what is wrong."""
    body = require_object(data, "")
    if not header_type:
        raise WebhookRejected(400, "missing x-amz-sns-message-type header")
    kind = body.get("Type")
    if kind not in MESSAGE_TYPES:
        raise WebhookRejected(400, "Type must be SubscriptionConfirmation, Notification or UnsubscribeConfirmation")
    if header_type != kind:
        raise WebhookRejected(400, "x-amz-sns-message-type does not match the message's Type")
    signed = NOTIFICATION_FIELDS if kind == "Notification" else CONFIRMATION_FIELDS
    message: dict[str, str] = {}
    for key in (*signed, "SignatureVersion", "Signature", "SigningCertURL"):
        if key == "Subject":
            subject = body.get("Subject")
            if subject is None:
                continue
            if not isinstance(subject, str):
                raise WebhookRejected(400, "Subject must be a string")
            message[key] = subject
            continue
        value = body.get(key)
        if value is None:
            raise WebhookRejected(400, f"{key} is missing")
        if not isinstance(value, str):
            raise WebhookRejected(400, f"{key} must be a string")
        message[key] = value
    if message["SignatureVersion"] not in _HASHES:
        raise WebhookRejected(400, 'SignatureVersion must be "1" or "2"')
    return message


def string_to_sign(message: Mapping[str, str]) -> bytes:
    """The bytes SNS signs: "Name\\nValue\\n" for each signed field of the message's Type, in AWS's order."""
    signed = NOTIFICATION_FIELDS if message["Type"] == "Notification" else CONFIRMATION_FIELDS
    text = "".join(f"{key}\n{message[key]}\n" for key in signed if key in message)
    return text.encode("utf-8", "surrogatepass")


def verify_signature(message: Mapping[str, str], certificate: x509.Certificate, now: datetime) -> None:
    """401 unless `message["Signature"]` is the certificate's RSA signature of `string_to_sign(message)`."""
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise WebhookRejected(401, "the signing certificate is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise WebhookRejected(401, "the signing certificate does not hold an RSA key")
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRejected(401, "bad signature: Signature is not base64") from None
    algorithm = _HASHES[message["SignatureVersion"]]()
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature:
        raise WebhookRejected(401, "bad signature") from None


# -- the CloudWatch alarm ----------------------------------------------------------------------------------------


def parse_alarm(text: str, *, topic_arn: str, timestamp: datetime, default_severity: Severity = "warning") -> Alert:
    """A CloudWatch alarm notification (the SNS `Message`) as an Alert; 400 naming what is wrong with it."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise WebhookRejected(
            400, f"Message is not a CloudWatch alarm: not JSON: {error.msg} at line {error.lineno} column {error.colno}"
        ) from None
    except (ValueError, RecursionError):
        raise WebhookRejected(400, "Message is not a CloudWatch alarm: not JSON") from None
    alarm = require_object(data, "Message")
    name = optional_string(alarm, "AlarmName", "Message")
    if not name or not name.strip():
        raise WebhookRejected(400, "Message.AlarmName is missing: not a CloudWatch alarm")
    state = alarm.get("NewStateValue")
    if not isinstance(state, str) or state not in _STATES:
        raise WebhookRejected(400, "Message.NewStateValue must be ALARM, OK or INSUFFICIENT_DATA")
    description = optional_string(alarm, "AlarmDescription", "Message") or ""
    reason = optional_string(alarm, "NewStateReason", "Message") or ""
    account = optional_string(alarm, "AWSAccountId", "Message")
    region_name = optional_string(alarm, "Region", "Message")
    alarm_arn = optional_string(alarm, "AlarmArn", "Message")
    old_state = optional_string(alarm, "OldStateValue", "Message")
    changed = alarm.get("StateChangeTime")
    changed_at = parse_time(changed, "Message.StateChangeTime") if changed is not None else None
    changed_at = changed_at or timestamp

    partition = region = None
    arn_match = _ALARM_ARN.fullmatch(alarm_arn or "")
    if arn_match:
        partition, region, arn_account, _ = arn_match.groups()
        account = account or arn_account

    tags = {key.lower(): value for key, value in _TAG.findall(description)}
    severity = normalise_severity(tags.get("severity"))
    if state == "INSUFFICIENT_DATA":
        severity = "info"
    elif severity is None:
        severity = "critical" if _CRITICAL_NAME.search(name) else default_severity

    labels: dict[str, str] = {"alertname": clean(name), "severity": severity}
    if "service" in tags:
        labels["service"] = tags["service"]
    if account:
        labels["aws_account"] = account
    if region or region_name:
        labels["aws_region"] = region or region_name or ""
    trigger = alarm.get("Trigger")
    threshold = None
    if trigger is not None:
        trigger = require_object(trigger, "Message.Trigger")
        for key, label in (("Namespace", "namespace"), ("MetricName", "metric")):
            value = optional_string(trigger, key, "Message.Trigger")
            if value:
                labels[label] = value
        for dim_name, dim_value in dimensions(trigger.get("Dimensions"), "Message.Trigger.Dimensions"):
            labels.setdefault(dim_name, dim_value)
        operator = trigger.get("ComparisonOperator")
        limit = trigger.get("Threshold")
        if isinstance(operator, str) and isinstance(limit, int | float) and not isinstance(limit, bool):
            threshold = clean(f"{operator} {limit}")

    annotations = {"state": f"{old_state} -> {state}" if old_state else state, "topic": topic_arn}
    if description:
        annotations["description"] = description
    if reason:
        annotations["reason"] = reason
    if threshold:
        annotations["threshold"] = threshold

    title = make_title(name)
    summary = reason or description or title
    links = {}
    if partition in _CONSOLE_DOMAINS and region:
        links["source"] = (
            f"https://{region}.{_CONSOLE_DOMAINS[partition]}/cloudwatch/home?region={region}"
            f"#alarmsV2:alarm/{quote(name, safe='')}"
        )
    identity = alarm_arn or json.dumps([account, region or region_name, name])
    return Alert(
        source=NAME,
        fingerprint=make_fingerprint(NAME, identity),
        status=_STATES[state],
        title=title,
        severity=severity,
        labels=labels,
        annotations=annotations,
        summary=clip(summary, MAX_SUMMARY_CHARS),
        starts_at=changed_at,
        ends_at=changed_at if state == "OK" else None,
        links=links,
        group_key=None,
    )


def dimensions(value: Any, path: str) -> list[tuple[str, str]]:
    """A metric's `[{"name": ..., "value": ...}]` as pairs; 400 naming an entry of the wrong shape."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise WebhookRejected(400, f"{path} must be a list")
    pairs = []
    for index, item in enumerate(value):
        entry = require_object(item, f"{path}[{index}]")
        name = optional_string(entry, "name", f"{path}[{index}]")
        dim_value = optional_string(entry, "value", f"{path}[{index}]")
        if not name or dim_value is None:
            raise WebhookRejected(400, f"{field_path(f'{path}[{index}]', 'name')} and value must be strings")
        pairs.append((name, dim_value))
    return pairs


def build(settings: SnsSettings, *, environ: Mapping[str, str], http: aiohttp.ClientSession) -> SnsSource:
    """The SNS source, fetching certificates with `http`; SourceConfigError when `ca_bundle_path` cannot be read."""
    del environ  # SNS messages are signed by AWS: no secret to read
    context = None
    if settings.ca_bundle_path is not None:
        try:
            context = ssl.create_default_context(cafile=settings.ca_bundle_path)
        except (OSError, ssl.SSLError) as error:
            reason = getattr(error, "strerror", None) or getattr(error, "reason", None) or type(error).__name__
            raise SourceConfigError(f"ca_bundle_path {settings.ca_bundle_path}: cannot load it ({reason})") from None
    return SnsSource(settings, http=http, ssl_context=context)
