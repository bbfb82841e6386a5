"""Block Kit validation as Slack's Web API does it: known block and element types and Slack's size limits.
`validate_blocks` returns the problems in Slack's `response_metadata.messages` wording (empty means valid)."""

from __future__ import annotations

import json
from typing import Any

BLOCK_TYPES = frozenset(
    {"header", "section", "divider", "context", "actions", "image", "input", "rich_text", "file", "video", "markdown"}
)
INTERACTIVE_ELEMENTS = frozenset(
    {
        "button",
        "static_select",
        "multi_static_select",
        "overflow",
        "datepicker",
        "timepicker",
        "datetimepicker",
        "checkboxes",
        "radio_buttons",
        "users_select",
        "multi_users_select",
        "conversations_select",
        "multi_conversations_select",
        "channels_select",
        "multi_channels_select",
        "external_select",
        "multi_external_select",
        "plain_text_input",
        "email_text_input",
        "url_text_input",
        "number_input",
    }
)
ACCESSORY_ELEMENTS = (
    INTERACTIVE_ELEMENTS - {"plain_text_input", "email_text_input", "url_text_input", "number_input", "datetimepicker"}
) | {"image"}
INPUT_ELEMENTS = INTERACTIVE_ELEMENTS - {"button", "overflow"}
TEXT_TYPES = frozenset({"plain_text", "mrkdwn"})

MESSAGE_BLOCKS_LIMIT = 50
VIEW_BLOCKS_LIMIT = 100
SECTION_TEXT_LIMIT = 3000
FIELDS_LIMIT = 10
FIELD_TEXT_LIMIT = 2000
HEADER_TEXT_LIMIT = 150
ACTIONS_ELEMENTS_LIMIT = 25
CONTEXT_ELEMENTS_LIMIT = 10
BUTTON_TEXT_LIMIT = 75
BUTTON_VALUE_LIMIT = 2000
ACTION_ID_LIMIT = 255
BLOCK_ID_LIMIT = 255
OPTIONS_LIMIT = 100
OPTION_TEXT_LIMIT = 75
OPTION_VALUE_LIMIT = 150
PLACEHOLDER_LIMIT = 150
URL_LIMIT = 3000
ALT_TEXT_LIMIT = 2000
LABEL_LIMIT = 2000


class BlocksFormatError(ValueError):
    """`blocks` was not JSON (Slack's `invalid_blocks_format`)."""


def parse_blocks(value: Any) -> Any:
    """Decodes `blocks` sent as a JSON string (form-encoded calls) and returns lists and dicts as they are."""
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as error:
            raise BlocksFormatError(str(error)) from error
    return value


def validate_blocks(blocks: Any, *, limit: int = MESSAGE_BLOCKS_LIMIT) -> list[str]:
    """The problems Slack would report for these blocks; an empty list when they are valid."""
    checker = _Checker()
    checker.blocks(blocks, limit)
    return checker.problems


class _Checker:
    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, pointer: str, what: str) -> None:
        self.problems.append(f"[ERROR] {what} [json-pointer:{pointer}]")

    # -- blocks ---------------------------------------------------------------------------------------------------

    def blocks(self, blocks: Any, limit: int) -> None:
        if not isinstance(blocks, list):
            self.fail("/blocks", "must be an array of blocks")
            return
        if len(blocks) > limit:
            self.fail("/blocks", f"must contain no more than {limit} items")
        block_ids: set[str] = set()
        for index, block in enumerate(blocks):
            pointer = f"/blocks/{index}"
            if not isinstance(block, dict):
                self.fail(pointer, "must be an object")
                continue
            kind = block.get("type")
            if kind not in BLOCK_TYPES:
                self.fail(f"{pointer}/type", f"unknown block type `{kind}`" if kind else "missing required field: type")
                continue
            block_id = block.get("block_id")
            if block_id is not None:
                if not isinstance(block_id, str) or not block_id:
                    self.fail(f"{pointer}/block_id", "must be a non-empty string")
                elif len(block_id) > BLOCK_ID_LIMIT:
                    self.fail(f"{pointer}/block_id", f"must be less than {BLOCK_ID_LIMIT + 1} characters")
                elif block_id in block_ids:
                    self.fail(f"{pointer}/block_id", f"duplicate block_id `{block_id}`")
                else:
                    block_ids.add(block_id)
            getattr(self, f"block_{kind}", self.block_other)(block, pointer)

    def block_header(self, block: dict[str, Any], pointer: str) -> None:
        self.text(block.get("text"), f"{pointer}/text", HEADER_TEXT_LIMIT, plain_only=True, required=True)

    def block_section(self, block: dict[str, Any], pointer: str) -> None:
        text, fields = block.get("text"), block.get("fields")
        if text is None and fields is None:
            self.fail(pointer, "must provide either text or fields")
        if text is not None:
            self.text(text, f"{pointer}/text", SECTION_TEXT_LIMIT, required=True)
        if fields is not None:
            if not isinstance(fields, list) or not fields:
                self.fail(f"{pointer}/fields", "must be a non-empty array")
            else:
                if len(fields) > FIELDS_LIMIT:
                    self.fail(f"{pointer}/fields", f"must contain no more than {FIELDS_LIMIT} items")
                for i, field in enumerate(fields):
                    self.text(field, f"{pointer}/fields/{i}", FIELD_TEXT_LIMIT, required=True)
        accessory = block.get("accessory")
        if accessory is not None:
            self.element(accessory, f"{pointer}/accessory", ACCESSORY_ELEMENTS)

    def block_divider(self, block: dict[str, Any], pointer: str) -> None:
        return None

    def block_context(self, block: dict[str, Any], pointer: str) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.fail(f"{pointer}/elements", "must be a non-empty array")
            return
        if len(elements) > CONTEXT_ELEMENTS_LIMIT:
            self.fail(f"{pointer}/elements", f"must contain no more than {CONTEXT_ELEMENTS_LIMIT} items")
        for i, element in enumerate(elements):
            if isinstance(element, dict) and element.get("type") == "image":
                self.image(element, f"{pointer}/elements/{i}")
            else:
                self.text(element, f"{pointer}/elements/{i}", SECTION_TEXT_LIMIT, required=True)

    def block_actions(self, block: dict[str, Any], pointer: str) -> None:
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            self.fail(f"{pointer}/elements", "must be a non-empty array")
            return
        if len(elements) > ACTIONS_ELEMENTS_LIMIT:
            self.fail(f"{pointer}/elements", f"must contain no more than {ACTIONS_ELEMENTS_LIMIT} items")
        action_ids: set[str] = set()
        for i, element in enumerate(elements):
            self.element(element, f"{pointer}/elements/{i}", INTERACTIVE_ELEMENTS)
            action_id = element.get("action_id") if isinstance(element, dict) else None
            if isinstance(action_id, str):
                if action_id in action_ids:
                    self.fail(f"{pointer}/elements/{i}/action_id", f"duplicate action_id `{action_id}`")
                action_ids.add(action_id)

    def block_image(self, block: dict[str, Any], pointer: str) -> None:
        self.image(block, pointer)
        if block.get("title") is not None:
            self.text(block["title"], f"{pointer}/title", LABEL_LIMIT, plain_only=True)

    def block_input(self, block: dict[str, Any], pointer: str) -> None:
        self.text(block.get("label"), f"{pointer}/label", LABEL_LIMIT, plain_only=True, required=True)
        if block.get("element") is None:
            self.fail(f"{pointer}/element", "missing required field: element")
        else:
            self.element(block["element"], f"{pointer}/element", INPUT_ELEMENTS)
        if block.get("hint") is not None:
            self.text(block["hint"], f"{pointer}/hint", LABEL_LIMIT, plain_only=True)

    def block_rich_text(self, block: dict[str, Any], pointer: str) -> None:
        if not isinstance(block.get("elements"), list):
            self.fail(f"{pointer}/elements", "must be an array")

    def block_file(self, block: dict[str, Any], pointer: str) -> None:
        if not isinstance(block.get("external_id"), str):
            self.fail(f"{pointer}/external_id", "missing required field: external_id")

    def block_other(self, block: dict[str, Any], pointer: str) -> None:
        return None

    # -- elements and composition objects -----------------------------------------------------------------------

    def element(self, element: Any, pointer: str, allowed: frozenset[str]) -> None:
        if not isinstance(element, dict):
            self.fail(pointer, "must be an object")
            return
        kind = element.get("type")
        if kind not in allowed:
            self.fail(
                f"{pointer}/type", f"unsupported element type `{kind}` here" if kind else "missing required field: type"
            )
            return
        if kind == "image":
            self.image(element, pointer)
            return
        action_id = element.get("action_id")
        if action_id is not None and (not isinstance(action_id, str) or len(action_id) > ACTION_ID_LIMIT):
            self.fail(f"{pointer}/action_id", f"must be a string of at most {ACTION_ID_LIMIT} characters")
        if element.get("placeholder") is not None:
            self.text(element["placeholder"], f"{pointer}/placeholder", PLACEHOLDER_LIMIT, plain_only=True)
        if kind == "button":
            self.text(element.get("text"), f"{pointer}/text", BUTTON_TEXT_LIMIT, plain_only=True, required=True)
            value = element.get("value")
            if value is not None and (not isinstance(value, str) or len(value) > BUTTON_VALUE_LIMIT):
                self.fail(f"{pointer}/value", f"must be a string of at most {BUTTON_VALUE_LIMIT} characters")
            style = element.get("style")
            if style is not None and style not in {"primary", "danger"}:
                self.fail(f"{pointer}/style", "must be one of primary, danger")
            url = element.get("url")
            if url is not None and (not isinstance(url, str) or len(url) > URL_LIMIT):
                self.fail(f"{pointer}/url", f"must be a string of at most {URL_LIMIT} characters")
            if element.get("confirm") is not None:
                self.confirm(element["confirm"], f"{pointer}/confirm")
        elif kind in {"static_select", "multi_static_select", "overflow", "checkboxes", "radio_buttons"}:
            self.options(element, pointer, kind)

    def options(self, element: dict[str, Any], pointer: str, kind: str) -> None:
        options, groups = element.get("options"), element.get("option_groups")
        if groups is not None and kind in {"static_select", "multi_static_select"}:
            if options is not None:
                self.fail(pointer, "must provide either options or option_groups, not both")
            if not isinstance(groups, list) or not groups:
                self.fail(f"{pointer}/option_groups", "must be a non-empty array")
                return
            if len(groups) > OPTIONS_LIMIT:
                self.fail(f"{pointer}/option_groups", f"must contain no more than {OPTIONS_LIMIT} items")
            for g, group in enumerate(groups):
                if not isinstance(group, dict):
                    self.fail(f"{pointer}/option_groups/{g}", "must be an object")
                    continue
                self.text(
                    group.get("label"),
                    f"{pointer}/option_groups/{g}/label",
                    OPTION_TEXT_LIMIT,
                    plain_only=True,
                    required=True,
                )
                self.option_list(group.get("options"), f"{pointer}/option_groups/{g}/options")
            return
        self.option_list(options, f"{pointer}/options")

    def option_list(self, options: Any, pointer: str) -> None:
        if not isinstance(options, list) or not options:
            self.fail(pointer, "must be a non-empty array")
            return
        if len(options) > OPTIONS_LIMIT:
            self.fail(pointer, f"must contain no more than {OPTIONS_LIMIT} items")
        for i, option in enumerate(options):
            if not isinstance(option, dict):
                self.fail(f"{pointer}/{i}", "must be an object")
                continue
            self.text(option.get("text"), f"{pointer}/{i}/text", OPTION_TEXT_LIMIT, required=True)
            value = option.get("value")
            if not isinstance(value, str) or len(value) > OPTION_VALUE_LIMIT:
                self.fail(f"{pointer}/{i}/value", f"must be a string of at most {OPTION_VALUE_LIMIT} characters")

    def confirm(self, confirm: Any, pointer: str) -> None:
        if not isinstance(confirm, dict):
            self.fail(pointer, "must be an object")
            return
        for key, limit in (("title", 100), ("text", 300), ("confirm", 30), ("deny", 30)):
            if key in confirm:
                self.text(confirm[key], f"{pointer}/{key}", limit, plain_only=key != "text")

    def image(self, image: dict[str, Any], pointer: str) -> None:
        url = image.get("image_url")
        if url is None and image.get("slack_file") is None:
            self.fail(f"{pointer}/image_url", "missing required field: image_url")
        elif url is not None and (not isinstance(url, str) or len(url) > URL_LIMIT):
            self.fail(f"{pointer}/image_url", f"must be a string of at most {URL_LIMIT} characters")
        alt = image.get("alt_text")
        if not isinstance(alt, str) or not alt:
            self.fail(f"{pointer}/alt_text", "missing required field: alt_text")
        elif len(alt) > ALT_TEXT_LIMIT:
            self.fail(f"{pointer}/alt_text", f"must be less than {ALT_TEXT_LIMIT + 1} characters")

    def text(self, obj: Any, pointer: str, limit: int, *, plain_only: bool = False, required: bool = False) -> None:
        if obj is None:
            if required:
                self.fail(pointer, "missing required field: text object")
            return
        if not isinstance(obj, dict):
            self.fail(pointer, "must be a text object")
            return
        kind = obj.get("type")
        if kind not in TEXT_TYPES:
            self.fail(f"{pointer}/type", "must be one of plain_text, mrkdwn")
            return
        if plain_only and kind != "plain_text":
            self.fail(f"{pointer}/type", "must be plain_text")
        text = obj.get("text")
        if not isinstance(text, str):
            self.fail(f"{pointer}/text", "must be a string")
        elif not text:
            self.fail(f"{pointer}/text", "must be more than 0 characters")
        elif len(text) > limit:
            self.fail(f"{pointer}/text", f"must be less than {limit + 1} characters")
