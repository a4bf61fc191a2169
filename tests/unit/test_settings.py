"""Settings precedence (defaults < file < env < flags), both file forms, and errors that say what to fix."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from autoscaler.settings import DEFAULT_DOCKER_HOST, DEFAULT_LISTEN, SettingsError, load_settings


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("AUTOSCALER_") or name == "DOCKER_HOST":
            monkeypatch.delenv(name)


def test_defaults_are_documented_values() -> None:
    settings = load_settings()
    assert settings.docker.host == DEFAULT_DOCKER_HOST
    assert settings.http.listen == DEFAULT_LISTEN
    assert settings.loop.interval == 5.0 and not settings.loop.dry_run and not settings.loop.once
    assert settings.policies.paths == [Path("policies")]
    assert settings.log.format == "text"


def test_every_field_is_documented() -> None:
    settings = load_settings()
    for group_name, group in settings:
        for field_name, info in type(group).model_fields.items():
            assert info.description, f"{group_name}.{field_name} has no description"


def test_docker_host_defaults_to_the_docker_host_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///run/lab/node1/docker.sock")
    assert load_settings().docker.host == "unix:///run/lab/node1/docker.sock"


def test_environment_uses_prefix_and_nested_delimiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AUTOSCALER_LOOP__INTERVAL", "12.5")
    monkeypatch.setenv("AUTOSCALER_PROMETHEUS__URL", "http://127.0.0.1:9090")
    monkeypatch.setenv("AUTOSCALER_POLICIES__PATHS", "a.yaml, dir/")
    monkeypatch.setenv("AUTOSCALER_IPVS__AGENTS", '["http://127.0.0.1:9105/metrics"]')
    monkeypatch.setenv("AUTOSCALER_LOG__LEVEL", "debug")
    settings = load_settings()
    assert settings.loop.interval == 12.5
    assert settings.prometheus.url == "http://127.0.0.1:9090"
    assert settings.policies.paths == [Path("a.yaml"), Path("dir/")]
    assert settings.ipvs.agents == ["http://127.0.0.1:9105/metrics"]
    assert settings.log.level == "DEBUG"


def test_yaml_file_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("loop:\n  interval: 30\n  dry_run: true\nprometheus:\n  url: http://file:9090\n")
    monkeypatch.setenv("AUTOSCALER_LOOP__INTERVAL", "20")

    settings = load_settings(config, {"prometheus": {"url": "http://flag:9090"}})

    assert settings.loop.dry_run is True  # only the file set it
    assert settings.loop.interval == 20  # env beats file
    assert settings.prometheus.url == "http://flag:9090"  # flag beats both


def test_dotenv_file_and_config_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "autoscaler.env"
    config.write_text("AUTOSCALER_HTTP__LISTEN=127.0.0.1:9000\nAUTOSCALER_LOG__FORMAT=json\n")
    monkeypatch.setenv("AUTOSCALER_CONFIG", str(config))
    settings = load_settings()
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 9000)
    assert settings.log.format == "json"


def test_missing_settings_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match=r"nowhere\.yaml: no such file"):
        load_settings(tmp_path / "nowhere.yaml")


def test_unknown_key_in_file_is_an_error(tmp_path: Path) -> None:
    config = tmp_path / "settings.yaml"
    config.write_text("loop:\n  intervall: 3\n")
    with pytest.raises(SettingsError, match=r"loop\.intervall.*AUTOSCALER_LOOP__INTERVALL"):
        load_settings(config)


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"loop": {"interval": 0}}, "loop.interval"),
        ({"http": {"listen": "8080"}}, "http.listen"),
        ({"log": {"format": "xml"}}, "log.format"),
    ],
)
def test_bad_values_name_the_field_and_variable(overrides: dict[str, dict[str, object]], field: str) -> None:
    with pytest.raises(SettingsError) as caught:
        load_settings(overrides=overrides)
    message = str(caught.value)
    assert field in message
    assert "AUTOSCALER_" + field.upper().replace(".", "__") in message


def test_empty_listen_disables_http() -> None:
    assert load_settings(overrides={"http": {"listen": ""}}).http.listen == ""
