"""iptables-save parsing and fwmark mapping without a namespace (the real-iptables run is in
tests/integration/test_ipvs_mangle.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipvs_agent.mangle import (
    MarkRule,
    SwarmServiceRecord,
    map_fwmarks,
    parse_iptables_save,
    parse_network_inspect,
)
from ipvs_agent.model import IpvsFormatError

FIXTURES = Path(__file__).parents[1] / "fixtures" / "ipvs"


def test_only_the_mangle_table_counts() -> None:
    text = (
        "*nat\n-A PREROUTING -p tcp -m tcp --dport 80 -j MARK --set-xmark 0x5/0xffffffff\nCOMMIT\n"
        '*mangle\n-A INPUT -d 10.0.0.5/32 -m comment --comment "swarm vip" '
        "-j MARK --set-xmark 0x100/0xffffffff\n"
        "COMMIT\n"
    )
    assert parse_iptables_save(text) == [MarkRule("INPUT", 0x100, None, None, "10.0.0.5")]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('-A INPUT -m comment --comment "unterminated -j MARK --set-mark 1', "cannot split"),
        ("-A INPUT -d 10.0.0.5/32 -j MARK --set-xmark 0xZZ/0xffffffff", "unreadable mark"),
        ("-A PREROUTING -p tcp --dport http -j MARK --set-mark 1", "unreadable mark or port"),
        ("-A INPUT -d not-an-ip -j MARK --set-mark 1", "bad destination"),
    ],
)
def test_garbage_rules_name_the_line(line: str, match: str) -> None:
    with pytest.raises(IpvsFormatError, match=f"line 2: {match}"):
        parse_iptables_save("*mangle\n" + line + "\n")


@settings(deadline=None)  # shared CI machines are slow; correctness, not speed, is checked
@given(st.text(max_size=300))
def test_any_text_parses_or_fails_clearly(text: str) -> None:
    try:
        parse_iptables_save("*mangle\n" + text)
    except IpvsFormatError as exc:
        assert "iptables-save line" in str(exc)


def test_index_beats_rules_and_marks_are_per_node() -> None:
    # Node A and node B gave the same service different marks; each node's map stands alone.
    web_a = SwarmServiceRecord("web", "10.0.0.5", 256)
    web_b = SwarmServiceRecord("web", "10.0.0.5", 300)
    rule_a = MarkRule("INPUT", 256, destination="10.0.0.5")
    assert map_fwmarks([rule_a], [web_a])[256].evidence == "LocalLBIndex"
    assert set(map_fwmarks([MarkRule("INPUT", 300, destination="10.0.0.5")], [web_b])) == {300}
    assert 256 not in map_fwmarks([], [web_b])


@pytest.mark.parametrize(
    ("doc", "match"),
    [
        ({"Name": "x"}, "no Id/Name"),
        ({"Name": "x", "Id": "abc", "Services": []}, "Services is list"),
        ({"Name": "x", "Id": "abc", "Services": {"s": {"LocalLBIndex": "7"}}}, "LocalLBIndex"),
    ],
)
def test_bad_inspect_output_is_explained(doc: dict[str, object], match: str) -> None:
    with pytest.raises(IpvsFormatError, match=match):
        parse_network_inspect(doc)


def test_fixture_records() -> None:
    record = parse_network_inspect(json.loads((FIXTURES / "network_inspect_ingress.json").read_text()))
    assert record.ingress
    by_name = {s.name: s for s in record.services}
    assert by_name["web"].published_ports == (8080,)
    assert by_name["dns"].lb_index is None


def test_real_engine_shapes_dnsrr_and_ingress_sandbox() -> None:
    # Seen from a real 20.10 engine: dnsrr services carry VIP "<nil>", and the ingress network
    # lists its sandbox's endpoints under the service name "".
    doc = {
        "Name": "ingress",
        "Id": "8xvwibgb67",
        "Ingress": True,
        "Services": {
            "": {"VIP": "<nil>", "Ports": [], "LocalLBIndex": 0, "Tasks": [{"Name": "ingress-endpoint"}]},
            "prometheus": {"VIP": "<nil>", "Ports": [], "LocalLBIndex": 256, "Tasks": []},
        },
    }
    record = parse_network_inspect(doc)
    assert [(s.name, s.vip, s.lb_index) for s in record.services] == [("prometheus", None, 256)]


def test_remembered_lines_read_the_same_and_errors_keep_their_line() -> None:
    # Parsed lines are remembered across reads: a second read gives the same rules, and a
    # bad line is never remembered, so its error names where it is in each text.
    good = "-A INPUT -d 10.0.0.9/32 -j MARK --set-xmark 0x1ff/0xffffffff"
    bad = "-A INPUT -d 10.0.0.9/32 -j MARK --set-xmark 0xQQ/0xffffffff"
    first = parse_iptables_save(f"*mangle\n{good}\nCOMMIT\n")
    assert first == parse_iptables_save(f"*mangle\n-A OUTPUT -j ACCEPT\n{good}\nCOMMIT\n")
    assert first == [MarkRule("INPUT", 0x1FF, None, None, "10.0.0.9")]
    for lineno in (2, 3):
        with pytest.raises(IpvsFormatError, match=f"line {lineno}: unreadable mark"):
            parse_iptables_save("*mangle\n" + "-A OUTPUT -j ACCEPT\n" * (lineno - 2) + bad + "\n")
    # a remembered line still only counts in the mangle table
    assert parse_iptables_save(f"*nat\n{good}\nCOMMIT\n") == []
