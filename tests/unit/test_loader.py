"""load_file / load_paths: documents, directories, line numbers, collisions across files."""

from __future__ import annotations

from pathlib import Path

import pytest

from autoscaler.errors import PolicyError
from autoscaler.policy_sources.loader import LoadedPolicy, PolicyLoadError, Problem, load_file, load_paths


def policy_yaml(name: str, service: str, max_replicas: int = 5) -> str:
    return f"""\
apiVersion: autoscaler.swarm/v1
kind: ScalingPolicy
metadata:
  name: {name}
spec:
  service: {service}
  maxReplicas: {max_replicas}
  metrics:
    - name: rps
      prometheus:
        query: sum(rate(http_requests_total{{service="{{{{ service }}}}"}}[1m]))
      target:
        averageValue: 50
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def problems_of(paths: list[Path]) -> list[Problem]:
    with pytest.raises(PolicyLoadError) as raised:
        load_paths(paths)
    return raised.value.problems


def line_of(path: Path, text: str, occurrence: int = 1) -> int:
    """1-based line of the n-th line containing ``text`` (so tests do not count by hand)."""
    hits = [n for n, line in enumerate(path.read_text().splitlines(), start=1) if text in line]
    return hits[occurrence - 1]


def test_multi_document_file_gives_one_policy_per_document_with_its_line(tmp_path: Path) -> None:
    file = write(tmp_path / "two.yaml", policy_yaml("a", "svc-a") + "---\n" + policy_yaml("b", "svc-b"))
    loaded = load_file(file)
    assert [p.policy.name for p in loaded] == ["a", "b"]
    assert [p.line for p in loaded] == [1, line_of(file, "apiVersion", 2)]
    assert all(p.path == file for p in loaded)


def test_loaded_policy_is_the_validated_model(tmp_path: Path) -> None:
    (loaded,) = load_file(write(tmp_path / "p.yaml", policy_yaml("a", "svc-a", max_replicas=7)))
    assert isinstance(loaded, LoadedPolicy)
    assert loaded.policy.spec.service == "svc-a"
    assert loaded.policy.spec.max_replicas == 7


def test_directory_loads_yaml_and_yml_in_name_order_not_recursively(tmp_path: Path) -> None:
    write(tmp_path / "b.yml", policy_yaml("b", "svc-b"))
    write(tmp_path / "a.yaml", policy_yaml("a", "svc-a"))
    write(tmp_path / "notes.txt", "not a policy")
    write(tmp_path / ".hidden.yaml", "this: [is not loaded")
    write(tmp_path / "drafts" / "c.yaml", policy_yaml("c", "svc-c"))
    loaded = load_paths([tmp_path])
    assert [p.path.name for p in loaded] == ["a.yaml", "b.yml"]


def test_a_file_named_explicitly_loads_whatever_its_extension(tmp_path: Path) -> None:
    file = write(tmp_path / "policy.txt", policy_yaml("a", "svc-a"))
    assert [p.policy.name for p in load_paths([file])] == ["a"]


def test_a_file_given_twice_loads_once(tmp_path: Path) -> None:
    file = write(tmp_path / "a.yaml", policy_yaml("a", "svc-a"))
    assert len(load_paths([tmp_path, file, tmp_path / "." / "a.yaml"])) == 1


def test_empty_directory_holds_no_policies(tmp_path: Path) -> None:
    assert load_paths([tmp_path]) == []


def test_missing_path_is_a_problem_without_line(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    (problem,) = problems_of([missing])
    assert (problem.path, problem.line) == (missing, 0)
    assert str(problem) == f"{missing}: no such file or directory"


def test_all_problems_of_all_files_are_reported_together(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", policy_yaml("a", "svc-a").replace("maxReplicas", "maxReplica"))
    second = write(tmp_path / "b.yaml", policy_yaml("b", "svc-b").replace("averageValue: 50", "value: -1"))
    problems = problems_of([tmp_path])
    assert [(p.path, p.line, p.field) for p in problems] == [
        (first, line_of(first, "maxReplica"), "spec.maxReplica"),
        (second, line_of(second, "value: -1"), "spec.metrics[0].target.value"),
    ]


def test_missing_field_points_at_its_parent_mapping(tmp_path: Path) -> None:
    file = write(tmp_path / "a.yaml", policy_yaml("a", "svc-a").replace("  maxReplicas: 5\n", ""))
    (problem,) = problems_of([file])
    assert problem.field == "spec.maxReplicas"
    assert problem.line == line_of(file, "spec:")


def test_problem_renders_path_line_field_message(tmp_path: Path) -> None:
    problem = Problem(tmp_path / "a.yaml", 7, None, "spec.maxReplicas", "must be at least 1, got 0")
    assert str(problem) == f"{tmp_path / 'a.yaml'}:7: spec.maxReplicas: must be at least 1, got 0"
    with_column = Problem(tmp_path / "a.yaml", 3, 5, "", "YAML syntax error: x")
    assert str(with_column) == f"{tmp_path / 'a.yaml'}:3:5: YAML syntax error: x"


def test_load_error_is_a_policy_error_listing_every_problem(tmp_path: Path) -> None:
    text = policy_yaml("a", "svc-a").replace("maxReplicas: 5", "maxReplicas: 0").replace("rps", "r-p-s")
    file = write(tmp_path / "a.yaml", text)
    with pytest.raises(PolicyError) as raised:
        load_file(file)
    assert isinstance(raised.value, PolicyLoadError)
    fields = [p.field for p in raised.value.problems]
    assert fields == ["spec.maxReplicas", "spec.metrics[0].name"]
    for problem in raised.value.problems:
        assert str(problem) in str(raised.value)


def test_same_service_in_two_files_names_both_places(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", policy_yaml("a", "web"))
    second = write(tmp_path / "b.yaml", policy_yaml("b", "web"))
    (problem,) = problems_of([tmp_path])
    assert (problem.path, problem.line, problem.field) == (
        second,
        line_of(second, "service:"),
        "spec.service",
    )
    assert f"{first}:{line_of(first, 'service:')}" in problem.message
    assert "'a'" in problem.message


def test_same_name_in_two_files_names_both_places(tmp_path: Path) -> None:
    first = write(tmp_path / "a.yaml", policy_yaml("same", "web"))
    second = write(tmp_path / "b.yaml", policy_yaml("same", "api"))
    (problem,) = problems_of([tmp_path])
    assert (problem.path, problem.field) == (second, "metadata.name")
    assert f"{first}:{line_of(first, 'name: same')}" in problem.message


def test_identical_selectors_claim_the_same_services(tmp_path: Path) -> None:
    def selector_policy(name: str) -> str:
        return policy_yaml(name, "x").replace("  service: x\n", "  selector:\n    labels:\n      tier: web\n")

    write(tmp_path / "a.yaml", selector_policy("a"))
    write(tmp_path / "b.yaml", selector_policy("b"))
    (problem,) = problems_of([tmp_path])
    assert problem.field == "spec.selector"
    assert "tier=web" in problem.message


def test_collisions_are_checked_among_valid_documents_of_a_broken_file(tmp_path: Path) -> None:
    broken = (
        policy_yaml("a", "web")
        + "---\n"
        + policy_yaml("b", "api").replace("maxReplicas: 5", "maxReplicas: x")
    )
    write(tmp_path / "a.yaml", broken)
    write(tmp_path / "b.yaml", policy_yaml("c", "web"))
    fields = [p.field for p in problems_of([tmp_path])]
    assert fields == ["spec.maxReplicas", "spec.service"]


def test_yaml_anchors_and_merge_keys_work(tmp_path: Path) -> None:
    text = policy_yaml("a", "svc-a") + (
        "  behavior:\n"
        "    scaleUp: &rules\n"
        "      stabilizationWindowSeconds: 30\n"
        "    scaleDown:\n"
        "      <<: *rules\n"
        "      selectPolicy: Min\n"
    )
    (loaded,) = load_file(write(tmp_path / "a.yaml", text))
    assert loaded.policy.spec.behavior.down_window == 30


def test_not_utf8_is_a_clear_problem_on_the_line_of_the_bad_byte(tmp_path: Path) -> None:
    file = tmp_path / "latin1.yaml"
    text = policy_yaml("a", "svc-a").replace("svc-a", "caf\u00e9")
    file.write_bytes(text.encode("latin-1"))
    (problem,) = problems_of([file])
    expected_line = next(n for n, line in enumerate(text.splitlines(), start=1) if "caf" in line)
    assert problem.line == expected_line
    assert "UTF-8" in problem.message


def test_top_level_scalar_document_is_not_a_policy(tmp_path: Path) -> None:
    (problem,) = problems_of([write(tmp_path / "a.yaml", "just some text\n")])
    assert "not a mapping" in problem.message
    assert problem.line == 1


def test_key_order_and_comments_do_not_change_the_result(tmp_path: Path) -> None:
    plain = load_file(write(tmp_path / "a.yaml", policy_yaml("a", "svc-a")))[0].policy
    header, spec = policy_yaml("a", "svc-a").split("spec:\n")
    reordered = "# the spec first, then the header\nspec:\n" + spec + header
    assert load_file(write(tmp_path / "b.yaml", reordered))[0].policy == plain


def test_duplicate_key_inside_an_aliased_mapping_is_reported_once(tmp_path: Path) -> None:
    text = policy_yaml("a", "svc-a") + (
        "  behavior:\n"
        "    scaleUp: &rules\n"
        "      selectPolicy: Min\n"
        "      selectPolicy: Max\n"
        "    scaleDown: *rules\n"
    )
    file = write(tmp_path / "a.yaml", text)
    problems = problems_of([file])
    assert [(p.line, p.field) for p in problems] == [
        (line_of(file, "selectPolicy: Max"), "spec.behavior.scaleUp.selectPolicy")
    ]
