"""Plain text: what free-text fields (reasons, details, names, SKUs) accept, and how a log line
shows text that came from elsewhere.

Control characters are refused in free text: a line feed would split a log line (and let a
caller forge the next one), NUL makes a log file binary, ESC drives a terminal, and a
bidirectional override (U+202E) makes a console show the text reversed. Logs escape them
anyway (`escaped`), for text that is not validated (a CloudEvent id, a header).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated

from pydantic import AfterValidator

# C0 controls (line breaks and tabs included), DEL, C1 controls, the Unicode line and paragraph
# separators, and the bidirectional embeddings, overrides and isolates (the "Trojan Source"
# set). The bidi marks LRM, RLM and ALM stay allowed: they cannot reorder other text.
UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_NAMES = {
    0x00: "NUL",
    0x07: "BEL",
    0x08: "backspace",
    0x09: "tab",
    0x0A: "line feed",
    0x0D: "carriage return",
    0x1B: "escape",
    0x7F: "DEL",
}
_ESCAPES = {ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"}


def describe_char(char: str) -> str:
    """'U+202E (right-to-left override)'."""
    code = ord(char)
    name = _NAMES.get(code) or unicodedata.name(char, "control character").lower()
    return f"U+{code:04X} ({name})"


def check_plain(value: str) -> str:
    """A pydantic validator: `value` unless it holds a control character or a bidi override."""
    found = UNSAFE.search(value)
    if found:
        raise ValueError(
            "must be plain text without control characters (line breaks and tabs included) "
            f"or bidirectional overrides; found {describe_char(found.group())} at character "
            f"{found.start() + 1}"
        )
    return value


# Free text in a request body: always checked (messages use contracts.messages.FreeText,
# checked where they enter the system).
PlainText = Annotated[str, AfterValidator(check_plain)]


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code in _ESCAPES:
        return _ESCAPES[code]
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escaped(text: str) -> str:
    """`text` on one line, its control characters and bidi overrides written as escapes."""
    return UNSAFE.sub(_escape, text)
