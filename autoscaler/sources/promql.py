"""Filling ``{{ service }}`` into a PromQL query without letting the name change the query.

A service name is user data: ``a"} or vector(1) #`` must select the series of a service with
that odd name, never add a clause. So the name is only ever placed inside a PromQL string
literal, escaped with the escapes PromQL's lexer understands (Go's: ``\\\\ \\" \\n \\xNN``...).

Where the placeholder sits decides what is written, so that both habits work:

- inside a double- or single-quoted string (``job="{{ service }}"``): the escaped name alone;
- outside any string (``job={{ service }}``): a complete double-quoted literal;
- inside a backtick raw string: refused, because raw strings have no escapes at all.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*service\s*\}\}")

# Go escapes that PromQL's lexer and strconv.Unquote both accept; every other control
# character goes out as \xNN, which Go decodes to the same byte (always < 0x80 here).
_SHORT_ESCAPES = {
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


# RE2 metacharacters; escaping only these keeps non-ASCII names readable in the query.
_REGEX_SPECIAL = frozenset("\\.+*?()|[]{}^$")


class TemplateError(ValueError):
    """The query template cannot be filled safely (says where and how to fix it)."""


def escape_string_body(value: str, quote: str = '"') -> str:
    """``value`` escaped to sit between two ``quote`` characters of a PromQL string literal."""
    if quote not in ('"', "'"):
        raise ValueError(f"PromQL escapable quotes are ' and \", not {quote!r}")
    out: list[str] = []
    for char in value:
        code = ord(char)
        if char in _SHORT_ESCAPES:
            out.append(_SHORT_ESCAPES[char])
        elif char == quote:
            out.append("\\" + quote)
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            # A lone surrogate cannot be UTF-8 encoded, so it can be no Docker service name.
            raise ValueError(f"string contains a lone surrogate U+{code:04X}; it is not valid UTF-8")
        else:
            out.append(char)
    return "".join(out)


def string_literal(value: str) -> str:
    """``value`` as a complete double-quoted PromQL string literal."""
    return '"' + escape_string_body(value) + '"'


def _string_context_at(template: str, position: int) -> tuple[str | None, int]:
    """The quote character of the string open at ``position`` (None outside) and where it opened."""
    quote: str | None = None
    opened = -1
    index = 0
    while index < position:
        char = template[index]
        if quote is None:
            if char in "\"'`":
                quote, opened = char, index
            elif char == "#":
                # A comment runs to the end of the line; a placeholder there is never seen by Prometheus.
                newline = template.find("\n", index)
                if newline == -1 or newline > position:
                    return "#", index
                index = newline
        elif char == "\\" and quote != "`":
            index += 1  # the escaped character cannot close the string
        elif char == quote:
            quote = None
        index += 1
    return quote, opened


def _is_regex_operand(template: str, opened: int) -> bool:
    """Whether the literal opening at ``opened`` is the right side of ``=~`` or ``!~``."""
    return template[:opened].rstrip().endswith(("=~", "!~"))


def escape_regex(value: str) -> str:
    """``value`` as an RE2 pattern matching exactly itself (RE2 accepts \\ before any punctuation)."""
    return "".join("\\" + char if char in _REGEX_SPECIAL else char for char in value)


def fill(template: str, service: str) -> str:
    """Replace every ``{{ service }}`` in ``template`` with ``service``, safely quoted.

    Inside the string of a regex matcher (``=~ "{{ service }}"``) the name is also
    regex-escaped, so ``api.v1`` matches only ``api.v1``, not ``apixv1``.
    Raises ``TemplateError`` when a placeholder sits where no escaping can make it safe.
    """
    parts: list[str] = []
    last = 0
    for match in PLACEHOLDER.finditer(template):
        context, opened = _string_context_at(template, match.start())
        parts.append(template[last : match.start()])
        if context is None:
            literal_text = service
            if _is_regex_operand(template, match.start()):
                literal_text = escape_regex(service)
            parts.append(string_literal(literal_text))
        elif context in ('"', "'"):
            body = escape_regex(service) if _is_regex_operand(template, opened) else service
            parts.append(escape_string_body(body, context))
        elif context == "`":
            raise TemplateError(
                f"query {template!r}: {{{{ service }}}} at offset {match.start()} is inside a `raw string`, "
                "which has no escapes, so a service name could end it; use double quotes instead"
            )
        else:
            raise TemplateError(
                f"query {template!r}: {{{{ service }}}} at offset {match.start()} is inside a # comment; "
                "move it out of the comment"
            )
        last = match.end()
    parts.append(template[last:])
    return "".join(parts)
