"""A service name filled into a query can never change the query's shape.

The checks decode the filled query with a lexer written here from PromQL's string rules
(Go escapes, three quote kinds, raw newlines forbidden), independent of the code under test.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from autoscaler.sources.promql import TemplateError, escape_string_body, fill, string_literal

_SIMPLE = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


class LexError(ValueError):
    pass


def _decode_escape(text: str, index: int, quote: str) -> tuple[str, int]:
    """Decode the escape starting after the backslash at ``index``; return (chars, next index)."""
    char = text[index]
    if char in _SIMPLE:
        return _SIMPLE[char], index + 1
    if char == quote:
        return quote, index + 1
    widths = {"x": 2, "u": 4, "U": 8}
    if char in widths:
        digits = text[index + 1 : index + 1 + widths[char]]
        if len(digits) != widths[char] or any(d not in "0123456789abcdefABCDEF" for d in digits):
            raise LexError(f"bad \\{char} escape at {index}")
        return chr(int(digits, 16)), index + 1 + widths[char]
    if char in "01234567":
        digits = text[index : index + 3]
        if len(digits) != 3 or any(d not in "01234567" for d in digits):
            raise LexError(f"bad octal escape at {index}")
        return chr(int(digits, 8)), index + 3
    raise LexError(f"unknown escape \\{char} at {index}")


def lex(query: str) -> tuple[list[str], list[str]]:
    """Split ``query`` into (code outside strings, with each string as a marker; decoded strings)."""
    skeleton: list[str] = []
    strings: list[str] = []
    index = 0
    while index < len(query):
        char = query[index]
        if char not in "\"'`":
            skeleton.append(char)
            index += 1
            continue
        quote, index, body = char, index + 1, []
        while True:
            if index >= len(query):
                raise LexError("unterminated string")
            current = query[index]
            if current == quote:
                index += 1
                break
            if current == "\n" and quote != "`":
                raise LexError("raw newline in a quoted string")
            if current == "\\" and quote != "`":
                decoded, index = _decode_escape(query, index + 1, quote)
                body.append(decoded)
                continue
            body.append(current)
            index += 1
        skeleton.append("<STR>")
        strings.append("".join(body))
    return skeleton, strings


names = st.text(min_size=0, max_size=40)
awkward = st.text(alphabet=st.sampled_from(list("\"'`\\\n\r\t\x00\x7f{}()#=~!a é😀 \u2028")), max_size=20)


@given(st.one_of(names, awkward))
@example('x"} or vector(1) or {a="')
@example("\\")
@example("a\nb")
def test_double_quoted_literal_round_trips(name: str) -> None:
    skeleton, strings = lex(string_literal(name))
    assert skeleton == ["<STR>"]
    assert strings == [name]


TEMPLATES = [
    'sum(rate(http_requests_total{service="{{ service }}"}[1m]))',
    "sum(rate(http_requests_total{service='{{service}}'}[1m]))",
    'avg(cpu{service={{ service }}, job="x\\"y"}) / on() count(up{service!={{ service }}})',
    'label_replace(up, "dst", "{{ service }}", "src", "(.*)")',
]


@pytest.mark.parametrize("template", TEMPLATES)
@given(name=st.one_of(names, awkward))
def test_filled_query_keeps_its_shape_and_the_name_round_trips(template: str, name: str) -> None:
    reference_skeleton, reference_strings = lex(fill(template, "PLACEHOLDER-NAME"))
    skeleton, strings = lex(fill(template, name))
    assert skeleton == reference_skeleton
    assert len(strings) == len(reference_strings)
    for got, reference in zip(strings, reference_strings, strict=True):
        assert got == reference.replace("PLACEHOLDER-NAME", name)


@given(name=st.one_of(names, awkward))
def test_single_quote_body_escapes_only_what_single_quotes_need(name: str) -> None:
    _, strings = lex("'" + escape_string_body(name, "'") + "'")
    assert strings == [name]


@pytest.mark.parametrize(
    "template", ['up{service=~"{{ service }}"}', "up{service !~ '{{ service }}'}", "up{service=~{{service}}}"]
)
@given(name=st.one_of(names, awkward))
@example("api.v1")
@example("a|b")
def test_regex_matcher_matches_exactly_the_name(template: str, name: str) -> None:
    skeleton, strings = lex(fill(template, name))
    assert skeleton == lex(fill(template, "x"))[0]
    (pattern,) = strings
    assert re.fullmatch(pattern, name, flags=re.DOTALL) is not None
    for char in ".*+?|":
        if char in name:
            assert re.fullmatch(pattern, name.replace(char, "x"), flags=re.DOTALL) is None


def test_placeholder_in_raw_string_is_refused_with_a_fix() -> None:
    with pytest.raises(TemplateError, match=r"raw string.*use double quotes"):
        fill("up{service=`{{ service }}`}", "web")


def test_placeholder_in_comment_is_refused() -> None:
    with pytest.raises(TemplateError, match="comment"):
        fill("up # {{ service }}", "web")


def test_placeholder_after_comment_line_is_filled() -> None:
    filled = fill('# per service\nup{service="{{ service }}"}', 'we"b')
    assert lex(filled)[1] == ['we"b']


def test_escaped_quote_before_placeholder_does_not_end_the_string() -> None:
    filled = fill('up{a="x\\" {{ service }}"}', "web")
    assert lex(filled)[1] == ['x" web']


def test_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="surrogate"):
        string_literal("a\udc80")
