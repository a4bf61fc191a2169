"""Trace CSV parsing: the simulator's input contract and its error messages."""

from __future__ import annotations

import pytest

from autoscaler.core.trace import TraceError, parse_trace


def test_columns_times_and_missing_cells() -> None:
    trace = parse_trace("t,rps,conns\n0,10,\n5,NaN,3\n12.5,7.25,4\n", expected=["rps", "conns"])
    assert trace.metric_names == ("rps", "conns")
    assert trace.times == (0.0, 5.0, 12.5)
    assert trace.values["rps"] == (10.0, None, 7.25)
    assert trace.values["conns"] == (None, 3.0, 4.0)
    assert trace.end == 12.5
    assert len(trace) == 3


def test_blank_lines_are_ignored() -> None:
    trace = parse_trace("t,rps\n0,1\n\n10,2\n")
    assert trace.times == (0.0, 10.0)


@pytest.mark.parametrize(
    ("text", "expected", "message"),
    [
        ("", None, "trace:1: empty file"),
        ("time,rps\n0,1\n", None, "trace:1: first column must be 't'"),
        ("t\n0\n", None, "trace:1: no metric columns"),
        ("t,rps,rps\n0,1,2\n", None, "trace:1: repeated column(s): rps"),
        ("t,rsp\n0,1\n", ["rps"], "trace:1: column(s) rsp are not metrics of the policy (its metrics: rps)"),
        ("t,rps\n0,1\n", ["rps", "conns"], "trace:1: no column for policy metric(s) conns"),
        ("t,rps\n0,1,2\n", None, "trace:2: 3 cells, the header has 2"),
        ("t,rps\nzero,1\n", None, "trace:2: t='zero' is not a number"),
        ("t,rps\n-1,1\n", None, "trace:2: t=-1 must be a finite number of seconds >= 0"),
        ("t,rps\n0,1\n0,2\n", None, "trace:3: t=0 is not after the previous row's t=0"),
        ("t,rps\n0,lots\n", None, "trace:2: rps='lots' is not a number (leave empty for no data)"),
        ("t,rps\n", None, "trace: header only, no rows"),
    ],
)
def test_errors_say_where_and_what(text: str, expected: list[str] | None, message: str) -> None:
    with pytest.raises(TraceError) as info:
        parse_trace(text, expected=expected)
    assert any(p.startswith(message) for p in info.value.problems), info.value.problems


def test_every_bad_row_is_reported_at_once() -> None:
    with pytest.raises(TraceError) as info:
        parse_trace("t,rps\n0,x\n1,y\n2,3\n", where="spike.csv")
    assert info.value.problems == [
        "spike.csv:2: rps='x' is not a number (leave empty for no data)",
        "spike.csv:3: rps='y' is not a number (leave empty for no data)",
    ]
