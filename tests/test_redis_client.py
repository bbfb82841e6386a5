"""REDIS_URL parsing (pure but for reading the TLS files it names) and its check at start-up: every form, its TLS
options, and a clear error for each malformed one that names the variable and the form to use, without ever repeating
the password."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.platform.redis_client import RedisTarget, RedisUrlError, parse_redis_url
from bot.shell.settings import SettingsError, load_settings
from tests.redis_servers import TlsFiles, make_tls_files

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "redis://localhost:6379/0",
            RedisTarget("server", False, url="redis://localhost:6379/0", nodes=(("localhost", 6379),)),
        ),
        (
            "rediss://cache.example.com/2",
            RedisTarget("server", True, url="rediss://cache.example.com/2", nodes=(("cache.example.com", 6379),), db=2),
        ),
        (
            f"redis+sentinel://:{SECRET}@s1:26379,s2:26380,s3/mymaster/3",
            RedisTarget(
                "sentinel",
                False,
                nodes=(("s1", 26379), ("s2", 26380), ("s3", 26379)),
                master="mymaster",
                db=3,
                password=SECRET,
            ),
        ),
        (
            "rediss+sentinel://app:pw@10.0.0.1:26379/primary",
            RedisTarget(
                "sentinel", True, nodes=(("10.0.0.1", 26379),), master="primary", username="app", password="pw"
            ),
        ),
        ("redis+cluster://n1:7000,n2:7001", RedisTarget("cluster", False, nodes=(("n1", 7000), ("n2", 7001)))),
        ("rediss+cluster://:pw@[::1]:7000/", RedisTarget("cluster", True, nodes=(("::1", 7000),), password="pw")),
    ],
)
def test_every_form_is_read(url: str, expected: RedisTarget) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://localhost:6379", "REDIS_URL: unknown scheme 'http'"),
        ("localhost:6379", "REDIS_URL: not a URL"),
        (f"redis+sentinel://:{SECRET}@s1:26379,s2:26379", "the Sentinel master name is missing"),
        (f"redis+sentinel://:{SECRET}@s1:26379/m/0/x", "too many parts after the hosts"),
        (f"redis+sentinel://:{SECRET}@s1:26379/m/zero", "the database must be a number"),
        (f"redis+sentinel://:{SECRET}@s1:abc/m", "the port of host 1 (s1) must be a number from 1 to 65535"),
        (f"redis+cluster://:{SECRET}@n1:7000,,n3:7000", "host 2 is empty"),
        (f"redis+cluster://:{SECRET}@n1:7000/1", "a Redis Cluster has only database 0"),
        (f"redis://:{SECRET}@h1:6379,h2:6379/0", "several hosts need redis+sentinel:// or redis+cluster://"),
        (f"rediss://:{SECRET}@h1:99999/0", "the port of host 1 (h1) must be a number from 1 to 65535"),
    ],
)
def test_malformed_urls_say_what_is_wrong_and_the_form_without_the_password(url: str, message: str) -> None:
    with pytest.raises(RedisUrlError) as error:
        parse_redis_url(url)
    assert message in str(error.value)
    assert str(error.value).startswith("REDIS_URL: ") and "://" in str(error.value)  # the form to use
    assert SECRET not in str(error.value)


@given(st.text(max_size=80))
def test_any_text_is_read_or_refused_clearly(text: str) -> None:
    try:
        target = parse_redis_url(text)
    except RedisUrlError as error:
        assert str(error).startswith("REDIS_URL: ")
    else:
        assert target.kind in ("server", "sentinel", "cluster")


def test_the_target_never_shows_its_password() -> None:
    assert SECRET not in repr(parse_redis_url(f"redis+cluster://:{SECRET}@n1:7000"))


def test_start_up_refuses_a_malformed_redis_url_naming_the_variable() -> None:
    environ = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "x",
        "REDIS_URL": f"redis+sentinel://:{SECRET}@s1:26379",
    }
    with pytest.raises(SettingsError) as error:
        load_settings(environ)
    assert error.value.problems == [
        "REDIS_URL: the Sentinel master name is missing after the hosts; "
        "use redis+sentinel://[:password@]host1:26379,host2:26379/<master-name>/<db>"
    ]
    assert SECRET not in str(error.value)


def test_start_up_accepts_every_form() -> None:
    for url in ("redis://127.0.0.1:6379/0", "redis+sentinel://s1:26379/m/0", "rediss+cluster://n1:7000"):
        environ = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "x", "REDIS_URL": url}
        assert load_settings(environ).redis_url == url


@pytest.fixture(scope="module")
def pem_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """A CA and a certificate with its key, as PEM files."""
    return make_tls_files(tmp_path_factory.mktemp("pem"))


@pytest.mark.parametrize(
    "form",
    [
        "rediss://:{secret}@cache:6380/0",
        "rediss+sentinel://:{secret}@s1:26379,s2/m/0",
        "rediss+cluster://:{secret}@n1:7000",
    ],
)
def test_every_tls_form_reads_the_ca_and_the_client_certificate(form: str, pem_files: TlsFiles) -> None:
    query = f"?ssl_ca_certs={pem_files.ca}&ssl_certfile={pem_files.cert}&ssl_keyfile={pem_files.key}"
    target = parse_redis_url(form.format(secret=SECRET) + query)
    assert (target.tls, target.ca_certs, target.certfile, target.keyfile) == (
        True,
        str(pem_files.ca),
        str(pem_files.cert),
        str(pem_files.key),
    )
    assert target.tls_options() == {
        "ssl": True,
        "ssl_ca_certs": str(pem_files.ca),
        "ssl_certfile": str(pem_files.cert),
        "ssl_keyfile": str(pem_files.key),
    }
    assert SECRET not in repr(target)


def test_without_a_ca_file_tls_verifies_against_the_system_cas() -> None:
    target = parse_redis_url("rediss+cluster://clustercfg.x.cache.amazonaws.com:6379")
    assert target.tls_options() == {"ssl": True, "ssl_ca_certs": None, "ssl_certfile": None, "ssl_keyfile": None}


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?ssl_ca_certs=/no/such/ca.pem", "REDIS_URL: ssl_ca_certs=/no/such/ca.pem: no such file"),
        ("?ssl_ca_certs={key}", "ssl_ca_certs={key}: not CA certificates in PEM"),
        ("?ssl_ca_certs={directory}", "ssl_ca_certs={directory}: "),
        ("?ssl_ca_certs=", "REDIS_URL: ssl_ca_certs is empty"),
        ("?ssl_keyfile={key}", "REDIS_URL: ssl_keyfile needs ssl_certfile too"),
        ("?ssl_certfile={ca}", "ssl_certfile={ca}: not a client certificate and its unencrypted private key in PEM"),
        ("?ssl_ca_certs={ca}&ssl_ca_certs={ca}", "REDIS_URL: the option 'ssl_ca_certs' is given twice"),
        (
            "?ssl_ca_cert={ca}",
            "REDIS_URL: unknown TLS option 'ssl_ca_cert'; use ssl_ca_certs, ssl_certfile, ssl_keyfile",
        ),
        ("?ssl_cert_reqs=none", "REDIS_URL: ssl_cert_reqs=none would turn off the check of the server's certificate"),
        ("?ssl_cert_reqs=optional", "ssl_cert_reqs=optional would turn off the check"),
        ("?ssl_check_hostname=false", "ssl_check_hostname=false would turn off the check"),
    ],
)
@pytest.mark.parametrize(
    "form",
    [
        "rediss://:{secret}@cache:6380/0",
        "rediss+sentinel://:{secret}@s1:26379/m/0",
        "rediss+cluster://:{secret}@n1:7000",
    ],
)
def test_bad_tls_options_are_refused_at_start_up_for_every_form(
    form: str,
    query: str,
    message: str,
    pem_files: TlsFiles,
) -> None:
    names = {"ca": pem_files.ca, "key": pem_files.key, "directory": pem_files.ca.parent}
    with pytest.raises(RedisUrlError) as error:
        parse_redis_url(form.format(secret=SECRET) + query.format(**names))
    assert message.format(**names) in str(error.value)
    assert str(error.value).startswith("REDIS_URL: ") and SECRET not in str(error.value)


@pytest.mark.parametrize(
    "url",
    [
        "redis://h:6379/0?ssl_ca_certs={ca}",
        "redis+sentinel://s1/m/0?ssl_ca_certs={ca}",
        "redis+cluster://n1:7000?ssl_ca_certs={ca}",
        "unix:///run/redis.sock?ssl_ca_certs={ca}",
    ],
)
def test_tls_options_without_the_rediss_scheme_are_refused(url: str, pem_files: TlsFiles) -> None:
    with pytest.raises(RedisUrlError, match="ssl_ca_certs is a TLS option, and TLS needs the rediss scheme"):
        parse_redis_url(url.format(ca=pem_files.ca))


@pytest.mark.parametrize("url", ["rediss+sentinel://s1/m/0?socket_timeout=1", "redis+cluster://n1:7000?password=x"])
def test_sentinel_and_cluster_forms_refuse_options_they_would_ignore(url: str) -> None:
    with pytest.raises(RedisUrlError, match=r"unknown option '\w+'; this form takes only the TLS options"):
        parse_redis_url(url)


def test_one_server_keeps_the_options_redis_py_reads_itself() -> None:
    assert parse_redis_url("rediss://h:6380/0?ssl_cert_reqs=required&socket_keepalive=true").tls


def test_start_up_refuses_a_missing_ca_file_naming_the_variable() -> None:
    environ = {
        "SLACK_BOT_TOKEN": "xoxb-1",
        "SLACK_SIGNING_SECRET": "x",
        "REDIS_URL": f"rediss+cluster://:{SECRET}@n1:7000?ssl_ca_certs=/etc/nope/ca.pem",
    }
    with pytest.raises(SettingsError) as error:
        load_settings(environ)
    assert error.value.problems == ["REDIS_URL: ssl_ca_certs=/etc/nope/ca.pem: no such file"]
