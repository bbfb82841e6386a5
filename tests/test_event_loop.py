"""CHATOPS_EVENT_LOOP: uvloop where it is installed, asyncio's own loop on request or where uvloop is missing, and a
clear start-up error (nothing started) when uvloop is required but absent or the value is not one of the three."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from bot.shell.cli import main
from bot.shell.event_loop import EventLoopUnavailable, choose_event_loop, event_loop
from bot.shell.settings import SettingsError, load_settings
from tests.conftest import BOT_TOKEN

ENVIRONMENT = {"SLACK_BOT_TOKEN": BOT_TOKEN, "SLACK_SIGNING_SECRET": "s", "REDIS_URL": "redis://127.0.0.1:1/0"}


@pytest.mark.parametrize(
    ("choice", "available", "chosen"),
    [
        ("auto", True, "uvloop"),
        ("auto", False, "asyncio"),
        ("uvloop", True, "uvloop"),
        ("asyncio", True, "asyncio"),
        ("asyncio", False, "asyncio"),
    ],
)
def test_the_loop_chosen_for_each_setting(choice: str, available: bool, chosen: str) -> None:
    assert choose_event_loop(choice, uvloop_available=available) == chosen  # type: ignore[arg-type]


def test_uvloop_required_where_it_is_missing_says_what_to_do() -> None:
    with pytest.raises(EventLoopUnavailable, match=r"uvloop is not installed here.*CHATOPS_EVENT_LOOP=auto"):
        choose_event_loop("uvloop", uvloop_available=False)


def test_the_loops_made_are_the_ones_named() -> None:
    for choice, kind in (("auto", uvloop.Loop), ("asyncio", asyncio.BaseEventLoop)):
        chosen = event_loop(choice)  # type: ignore[arg-type]
        loop = chosen.new()
        try:
            assert isinstance(loop, kind)
            assert (chosen.name == "uvloop") == isinstance(loop, uvloop.Loop)
            assert loop.run_until_complete(asyncio.sleep(0, "ran")) == "ran"
        finally:
            loop.close()


@pytest.mark.parametrize("value", ["UVLOOP", "Asyncio", "auto"])
def test_the_setting_is_read_in_any_case(value: str) -> None:
    assert load_settings(ENVIRONMENT | {"CHATOPS_EVENT_LOOP": value}).event_loop == value.lower()


def test_an_unknown_loop_is_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SettingsError) as refused:
        load_settings(ENVIRONMENT | {"CHATOPS_EVENT_LOOP": "trio"})
    assert refused.value.problems == ["CHATOPS_EVENT_LOOP: Input should be 'auto', 'uvloop' or 'asyncio'"]
    for name, value in (ENVIRONMENT | {"CHATOPS_EVENT_LOOP": "trio"}).items():
        monkeypatch.setenv(name, value)
    assert main(["serve"]) == 2  # serve, given it, stops before anything starts
    err = capsys.readouterr().err
    assert "CHATOPS_EVENT_LOOP: Input should be" in err and "Traceback" not in err
