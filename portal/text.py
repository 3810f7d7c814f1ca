"""Rules for short text people type: names and other one-line fields.

A one-line field never holds a line break (nor another control character, nor Unicode's line and
paragraph separators): such text is printed in page titles, email subjects and email bodies,
where a line break would let its author write lines of their own.
"""

from __future__ import annotations

import unicodedata

from portal.errors import ApplicationError

ONE_LINE_MESSAGE = "Use one line of text, without line breaks or control characters."
# Cc: control characters (\n, \r, \t, NEL...); Zl/Zp: U+2028 and U+2029.
_BREAKING = {"Cc", "Zl", "Zp"}


def is_one_line(value: str) -> bool:
    return not any(unicodedata.category(character) in _BREAKING for character in value)


def one_line_require(value: str, *, field: str) -> str:
    """The value, or an ApplicationError on `field` when it spans more than one line."""
    if not is_one_line(value):
        raise ApplicationError(ONE_LINE_MESSAGE, field=field)
    return value


def one_line_quote(value: str, *, limit: int = 120) -> str:
    """Text written by someone else, made safe to embed inside a line of an email: every run
    of whitespace or control characters becomes one space, and it is cut to `limit`."""
    cleaned = "".join(
        " " if unicodedata.category(c) in _BREAKING or c.isspace() else c for c in value
    )
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= limit else cleaned[: limit - 1] + "…"
