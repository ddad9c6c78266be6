"""JSON lines that every reader splits where the writer meant."""

from __future__ import annotations

import json

# JSON allows U+2028 and U+2029 raw inside strings, yet `str.splitlines()` (and
# JavaScript before ES2019) takes them as line ends, which would split one record in two.
_LINE_BREAKS = str.maketrans({"\u2028": "\\u2028", "\u2029": "\\u2029"})


def json_line(record: dict) -> str:
    """`record` as one line of JSON, ending in a newline: UTF-8 text kept readable
    (ensure_ascii off), U+2028 and U+2029 escaped so the line stays one line."""
    return json.dumps(record, ensure_ascii=False).translate(_LINE_BREAKS) + "\n"
