"""The CLI: built-in commands, plugins from the entry-point group, and a missing lab."""

from __future__ import annotations

from importlib import metadata

import pytest

from autoscaler import cli


def test_installed_plugins_are_registered() -> None:
    names = {ep.name for ep in metadata.entry_points(group=cli.PLUGIN_GROUP)}
    assert {"ipvs-agent", "lab"} <= names  # the dev install: main distribution + ./lab
    help_text = cli.build_parser().format_help()
    for command in ("validate", "simulate", "run", "explain", "ipvs-agent", "lab"):
        assert command in help_text


def test_missing_lab_says_what_it_is_and_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    installed = metadata.entry_points(group=cli.PLUGIN_GROUP)
    without_lab = metadata.EntryPoints(ep for ep in installed if ep.name != "lab")
    monkeypatch.setattr(cli.metadata, "entry_points", lambda group: without_lab)

    assert cli.main(["lab", "up", "--nodes", "3"]) == cli.EXIT_INPUT
    err = capsys.readouterr().err
    assert "developer tool" in err
    assert "pip install -e ./lab" in err
    assert "invalid choice" not in err


def test_a_broken_plugin_fails_loudly(monkeypatch: pytest.MonkeyPatch) -> None:
    broken = metadata.EntryPoint(name="broken", value="no_such_module:register", group=cli.PLUGIN_GROUP)
    monkeypatch.setattr(cli.metadata, "entry_points", lambda group: metadata.EntryPoints([broken]))
    with pytest.raises(ModuleNotFoundError):
        cli.build_parser()
