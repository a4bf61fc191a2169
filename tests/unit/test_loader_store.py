"""PolicyStore: hot reload that re-reads only changes and never loses the last good version."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from test_loader import policy_yaml

from autoscaler.policy_sources import loader
from autoscaler.policy_sources.loader import PolicyStore


def max_replicas(store: PolicyStore) -> dict[str, int]:
    return {p.policy.name: p.policy.spec.max_replicas for p in store.policies}


@pytest.fixture
def parse_calls(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """Records every file the store actually parses."""
    calls: list[Path] = []
    real = loader.parse_policy_text

    def counting(text: str, path: Path) -> object:
        calls.append(path)
        return real(text, path)

    monkeypatch.setattr(loader, "parse_policy_text", counting)
    return calls


def test_nothing_is_read_before_the_first_reload(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-a"))
    store = PolicyStore([tmp_path])
    assert store.policies == []
    result = store.reload()
    assert (result.added, result.changed, result.removed, result.ok) == (["a"], [], [], True)
    assert max_replicas(store) == {"a": 5}


def test_reload_without_changes_parses_nothing(tmp_path: Path, parse_calls: list[Path]) -> None:
    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-a"))
    store = PolicyStore([tmp_path])
    store.reload()
    parsed_once = list(parse_calls)
    result = store.reload()
    assert result.unchanged and result.ok
    assert parse_calls == parsed_once


def test_same_size_edit_right_after_a_reload_is_seen(tmp_path: Path) -> None:
    # Same size and (on a coarse clock) maybe the same mtime: only the content hash differs.
    file = tmp_path / "a.yaml"
    file.write_text(policy_yaml("a", "svc-a", max_replicas=5))
    store = PolicyStore([tmp_path])
    store.reload()
    stat = file.stat()
    file.write_text(policy_yaml("a", "svc-a", max_replicas=6))
    os.utime(file, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # the worst case: mtime identical
    result = store.reload()
    assert result.changed == ["a"]
    assert max_replicas(store) == {"a": 6}


def test_broken_file_keeps_its_last_good_policies_until_fixed(tmp_path: Path) -> None:
    file = tmp_path / "a.yaml"
    file.write_text(policy_yaml("a", "svc-a", max_replicas=5))
    store = PolicyStore([tmp_path])
    store.reload()

    file.write_text(policy_yaml("a", "svc-a", max_replicas=5).replace("maxReplicas", "maxReplica"))
    broken = store.reload()
    assert broken.unchanged
    assert [p.field for p in broken.problems] == ["spec.maxReplica"]
    assert max_replicas(store) == {"a": 5}
    # Still reported on the next reload, so a restarted log shows it too.
    assert [p.field for p in store.reload().problems] == ["spec.maxReplica"]

    file.write_text(policy_yaml("a", "svc-a", max_replicas=9))
    fixed = store.reload()
    assert (fixed.changed, fixed.ok) == (["a"], True)
    assert max_replicas(store) == {"a": 9}


def test_file_broken_from_the_start_contributes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-a"))
    (tmp_path / "b.yaml").write_text("spec: [unclosed\n")
    store = PolicyStore([tmp_path])
    result = store.reload()
    assert result.added == ["a"]
    assert [p.path.name for p in result.problems] == ["b.yaml"]


def test_added_renamed_and_deleted_files(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-a"))
    store = PolicyStore([tmp_path])
    store.reload()

    (tmp_path / "b.yaml").write_text(policy_yaml("b", "svc-b"))
    assert store.reload().added == ["b"]

    (tmp_path / "b.yaml").write_text(policy_yaml("b2", "svc-b"))
    renamed = store.reload()
    assert (renamed.added, renamed.removed) == (["b2"], ["b"])

    (tmp_path / "a.yaml").unlink()
    deleted = store.reload()
    assert (deleted.removed, deleted.ok) == (["a"], True)
    assert max_replicas(store) == {"b2": 5}


def test_new_file_claiming_a_taken_service_waits_until_it_is_free(tmp_path: Path) -> None:
    (tmp_path / "b-old.yaml").write_text(policy_yaml("old", "web", max_replicas=5))
    store = PolicyStore([tmp_path])
    store.reload()

    # Sorted before the old file, so plain load order would blame the old one.
    (tmp_path / "a-new.yaml").write_text(policy_yaml("new", "web", max_replicas=8))
    refused = store.reload()
    assert refused.unchanged
    (problem,) = refused.problems
    assert (problem.path.name, problem.field) == ("a-new.yaml", "spec.service")
    assert "b-old.yaml" in problem.message
    assert max_replicas(store) == {"old": 5}

    (tmp_path / "b-old.yaml").unlink()
    released = store.reload()  # the new file itself was not touched
    assert (released.added, released.removed, released.ok) == (["new"], ["old"], True)
    assert max_replicas(store) == {"new": 8}


def test_edit_that_collides_keeps_the_files_previous_version(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-a"))
    (tmp_path / "b.yaml").write_text(policy_yaml("b", "svc-b"))
    store = PolicyStore([tmp_path])
    store.reload()

    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-b", max_replicas=7))
    result = store.reload()
    assert [(p.path.name, p.field) for p in result.problems] == [("a.yaml", "spec.service")]
    assert {p.policy.name: p.policy.spec.service for p in store.policies} == {"a": "svc-a", "b": "svc-b"}


def test_missing_path_is_reported_and_the_rest_still_loads(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(policy_yaml("a", "svc-a"))
    store = PolicyStore([tmp_path, tmp_path / "gone"])
    result = store.reload()
    assert result.added == ["a"]
    assert [(p.path.name, p.line) for p in result.problems] == [("gone", 0)]
