"""REDIS_URL parsing (pure) and its check at start-up: every form, and a clear error for each malformed one that
names the variable and the form to use, without ever repeating the password."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.redis_client import RedisTarget, RedisUrlError, parse_redis_url
from bot.settings import SettingsError, load_settings

SECRET = "s3cr3t-Pa55"


@pytest.mark.parametrize(("url", "expected"), [
    ("redis://localhost:6379/0",
     RedisTarget("server", False, url="redis://localhost:6379/0", nodes=(("localhost", 6379),))),
    ("rediss://cache.example.com/2", RedisTarget("server", True, url="rediss://cache.example.com/2",
                                                 nodes=(("cache.example.com", 6379),), db=2)),
    (f"redis+sentinel://:{SECRET}@s1:26379,s2:26380,s3/mymaster/3",
     RedisTarget("sentinel", False, nodes=(("s1", 26379), ("s2", 26380), ("s3", 26379)), master="mymaster", db=3,
                 password=SECRET)),
    ("rediss+sentinel://app:pw@10.0.0.1:26379/primary",
     RedisTarget("sentinel", True, nodes=(("10.0.0.1", 26379),), master="primary", username="app", password="pw")),
    ("redis+cluster://n1:7000,n2:7001", RedisTarget("cluster", False, nodes=(("n1", 7000), ("n2", 7001)))),
    ("rediss+cluster://:pw@[::1]:7000/", RedisTarget("cluster", True, nodes=(("::1", 7000),), password="pw")),
])
def test_every_form_is_read(url: str, expected: RedisTarget) -> None:
    assert parse_redis_url(url) == expected


@pytest.mark.parametrize(("url", "message"), [
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
])
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
    environ = {"SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "x",
               "REDIS_URL": f"redis+sentinel://:{SECRET}@s1:26379"}
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
