"""`swarm-autoscaler simulate` end to end through main(): files in, report and CSV out."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from autoscaler.cli import main

ROOT = Path(__file__).resolve().parents[2]
WEB = ROOT / "examples" / "policies" / "web.yaml"
TRACES = ROOT / "examples" / "traces"


@pytest.mark.parametrize("trace", sorted(p.name for p in TRACES.glob("*.csv")))
def test_example_traces_replay_against_the_example_policy(
    trace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "timeline.csv"
    assert main(["simulate", str(WEB), "--trace", str(TRACES / trace), "--output", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "replica-seconds:" in printed and "overload-seconds:" in printed
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    for column in ("t", "ready", "desired", "panic", "reason", "requests_per_second"):
        assert column in rows[0]
    # One row per evaluation: t = 0, 5, ... up to the trace's last row.
    last_t = float((TRACES / trace).read_text().strip().splitlines()[-1].split(",")[0])
    assert len(rows) == int(last_t // 5) + 1
    assert all(2 <= int(r["desired"]) <= 20 for r in rows)  # web.yaml's min/max


def test_step_spike_scales_up_at_the_spike(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(WEB), "--trace", str(TRACES / "step-spike.csv")]) == 0
    lines = capsys.readouterr().out.splitlines()
    ups = [line for line in lines if " up " in line]
    assert ups and ups[0].startswith("t=    120s up")


def test_plot_writes_a_png(tmp_path: Path) -> None:
    png = tmp_path / "t.png"
    assert (
        main(["simulate", str(WEB), "--trace", str(TRACES / "ramp.csv"), "--plot", str(png), "--quiet"]) == 0
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_trace_is_exit_1_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t,requests_per_second\n0,12\n5,many\n")
    assert main(["simulate", str(WEB), "--trace", str(bad)]) == 1
    assert f"{bad}:3: requests_per_second='many' is not a number" in capsys.readouterr().err


def test_missing_trace_file_is_exit_1(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", str(WEB), "--trace", str(tmp_path / "nope.csv")]) == 1
    assert "cannot read" in capsys.readouterr().err


def test_file_with_several_policies_needs_policy_flag(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = WEB.read_text()
    two = tmp_path / "two.yaml"
    two.write_text(
        doc + "\n---\n" + doc.replace("name: web ", "name: web2 ").replace("service: web ", "service: web2 ")
    )
    trace = str(TRACES / "step-spike.csv")
    assert main(["simulate", str(two), "--trace", trace]) == 1
    assert "choose one with --policy NAME" in capsys.readouterr().err
    assert main(["simulate", str(two), "--trace", trace, "--policy", "web2", "--quiet"]) == 0


def test_usage_errors_exit_2() -> None:
    with pytest.raises(SystemExit) as info:
        main(["simulate", str(WEB), "--trace", "x.csv", "--interval", "0"])
    assert info.value.code == 2


def test_compare_hpa_prints_both_runs_and_ratios(capsys: pytest.CaptureFixture[str]) -> None:
    trace = TRACES / "ramp.csv"
    assert main(["simulate", str(WEB), "--trace", str(trace), "--compare", "hpa", "--quiet"]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = next(i for i, line in enumerate(lines) if "hpa defaults" in line)
    rows = {line.split()[0]: line.split()[1:] for line in lines[header + 1 :]}
    replica_line = next(line for line in lines if line.startswith("replica-seconds:"))
    ours = float(replica_line.split()[1])
    assert float(rows["replica-seconds"][0]) == ours
    hpa = float(rows["replica-seconds"][1])
    assert rows["replica-seconds"][2] == f"{ours / hpa:.2f}x"
    assert "overload-seconds" in rows and "scale" in rows


def test_from_prometheus_needs_a_start(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", str(WEB), "--from-prometheus", "http://127.0.0.1:1"])
    assert code == 1
    assert "--from-prometheus needs --start" in capsys.readouterr().err


def test_from_prometheus_rejects_ipvs_metrics(capsys: pytest.CaptureFixture[str]) -> None:
    tcp = ROOT / "examples" / "policies" / "tcp-service.yaml"
    code = main(["simulate", str(tcp), "--from-prometheus", "http://127.0.0.1:1", "--start", "now-1h"])
    assert code == 1
    assert "comes from IPVS, which keeps no history" in capsys.readouterr().err


def test_from_prometheus_unreachable_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 1 on loopback: nothing listens, the connection is refused at once.
    code = main(["simulate", str(WEB), "--from-prometheus", "http://127.0.0.1:1", "--start", "now-10m"])
    assert code == 1
    assert "range query to http://127.0.0.1:1 failed" in capsys.readouterr().err


@pytest.mark.parametrize("bad", ["yesterday", "2026-13-01T00:00:00Z"])
def test_bad_start_time_is_a_usage_error(bad: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["simulate", str(WEB), "--from-prometheus", "http://x", "--start", bad])
    assert exc.value.code == 2
    assert "not a time" in capsys.readouterr().err


def test_timeline_has_forecast_columns_with_predictive(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text(
        WEB.read_text().replace("  panic:\n", "  predictive:\n    enabled: true\n  panic:\n", 1)
    )
    out = tmp_path / "timeline.csv"
    assert (
        main(["simulate", str(policy), "--trace", str(TRACES / "ramp.csv"), "--output", str(out), "--quiet"])
        == 0
    )
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    forecasts = [float(r["requests_per_second_forecast"]) for r in rows if r["requests_per_second_forecast"]]
    # The ramp rises 950 req/s over 900 s: once there is history, forecasts run ahead of it.
    assert forecasts and rows[0]["requests_per_second_forecast"] == ""
    rising = [r for r in rows if 100 < float(r["t"]) < 800 and r["requests_per_second_forecast"]]
    assert all(float(r["requests_per_second_forecast"]) > float(r["requests_per_second"]) for r in rising)
    assert any("Forecast" in r["limits"] for r in rows)
