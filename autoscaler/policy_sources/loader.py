"""Load ScalingPolicy YAML files and directories, and hot-reload them safely.

* A file holds one or more documents separated by ``---``.
* A directory loads its ``*.yaml`` and ``*.yml`` files in name order. It is *not*
  recursive, like ``kubectl apply -f DIR``: operators park drafts and disabled policies in
  sub-directories. Hidden files (``.web.yaml``, editor lock files) are skipped. A file
  named explicitly is loaded whatever its extension.
* Every problem of every file is reported at once, each as ``path:line: field: message``
  (see ``Problem``); a policy name or a service claimed twice is a problem too.

``PolicyStore`` re-reads only what changed and never drops a working policy because its
file was saved half-edited: a broken file keeps its last good policies.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from autoscaler.policy_sources.documents import (
    LoadedPolicy,
    PolicyPlaces,
    check_collisions,
    parse_policy_text,
)
from autoscaler.policy_sources.problems import PolicyLoadError, Problem, clip

__all__ = [
    "LoadedPolicy",
    "PolicyLoadError",
    "PolicyStore",
    "Problem",
    "ReloadResult",
    "expand_paths",
    "load_file",
    "load_paths",
]

POLICY_SUFFIXES = (".yaml", ".yml")
# A policy is about 1 KiB; a file a thousand times that is a mistake (a log or a dump
# saved under a policy name) and would cost seconds and hundreds of MB to parse.
MAX_FILE_BYTES = 1024 * 1024
# Coarse file-system clocks tick every few ms (ext4, tmpfs) or 2 s (FAT); mtime plus size
# is trusted only for files older than this.
_RACY_WINDOW_NS = 3_000_000_000


def load_file(path: Path) -> list[LoadedPolicy]:
    """Every policy in ``path``; raises ``PolicyLoadError`` listing every problem of the file."""
    places, problems = _read_and_parse(path)
    problems.extend(problem for _, problem in check_collisions(places))
    if problems:
        raise PolicyLoadError(problems)
    return [place.loaded for place in places]


def load_paths(paths: Sequence[Path]) -> list[LoadedPolicy]:
    """Every policy in the given files and directories, in load order.

    Raises ``PolicyLoadError`` with the problems of every file (in load order), followed by
    the collisions between files. An empty directory is not an error: it holds no policies.
    """
    files, problems = expand_paths(paths)
    places: list[PolicyPlaces] = []
    for file in files:
        found, file_problems = _read_and_parse(file)
        places.extend(found)
        problems.extend(file_problems)
    problems.extend(problem for _, problem in check_collisions(places))
    if problems:
        raise PolicyLoadError(problems)
    return [place.loaded for place in places]


def expand_paths(paths: Sequence[Path]) -> tuple[list[Path], list[Problem]]:
    """The policy files named by ``paths`` (directories expanded, duplicates dropped).

    Runs on every reload, so a directory costs one ``scandir`` and no stat per file.
    Duplicates are recognised by real path: a directory's real path plus the file name.
    """
    files, problems, _ = _expand(paths)
    return files, problems


def _expand(paths: Sequence[Path]) -> tuple[list[Path], list[Problem], list[Path]]:
    """``expand_paths``, plus the paths that exist but could not be looked into."""
    files: list[Path] = []
    problems: list[Problem] = []
    unreadable: list[Path] = []
    seen: set[str] = set()
    for path in paths:
        try:
            candidates = _candidates(path)
        except OSError as exc:
            # A symlink loop, a directory we may not list: this path's problem only.
            problems.append(Problem(path, 0, None, "", _os_problem(exc)))
            if exc.errno != errno.ENOENT:
                unreadable.append(path)
            continue
        for candidate, key in candidates:
            if key not in seen:
                seen.add(key)
                files.append(candidate)
    return files, problems, unreadable


def _candidates(path: Path) -> list[tuple[Path, str]]:
    """The files ``path`` names, each with the key that recognises it when named twice."""
    if path.is_dir():
        real_dir = os.path.realpath(path)
        with os.scandir(path) as entries:
            names = sorted(entry.name for entry in entries if _is_policy_file(entry))
        return [(path / name, os.path.join(real_dir, name)) for name in names]
    os.stat(path)  # raises for a missing file and for a symlink loop, each with its own reason
    return [(path, os.path.realpath(path))]


def _is_policy_file(entry: os.DirEntry[str]) -> bool:
    name = entry.name
    if not name.endswith(POLICY_SUFFIXES) or name.startswith("."):
        return False
    try:
        return entry.is_file()
    except OSError:
        # A symlink loop or a dangling link under a policy name: load it, so reading it
        # reports the file's own problem instead of the file silently not existing.
        return True


def _os_problem(exc: OSError) -> str:
    if exc.errno == errno.ENOENT:
        return "no such file or directory"
    return f"cannot read: {exc.strerror or exc}"


def _read_and_parse(path: Path) -> tuple[list[PolicyPlaces], list[Problem]]:
    try:
        data = _read_capped(path)
    except OSError as exc:
        return [], [Problem(path, 0, None, "", _os_problem(exc))]
    except FileTooLarge as exc:
        return [], [Problem(path, 0, None, "", str(exc))]
    return _parse_bytes(data, path)


class FileTooLarge(Exception):
    """A policy file beyond ``MAX_FILE_BYTES``; its text is the operator's message."""


def _read_capped(path: Path) -> bytes:
    """The file's bytes; never reads more than one byte past the cap, whatever the file."""
    with path.open("rb") as file:
        # As much as the file holds, not a buffer the size of the cap: allocating 1 MiB for
        # each policy of ~1 KiB took longer than reading it (issue 15: 10,000 files).
        size = os.fstat(file.fileno()).st_size
        data = file.read(min(size, MAX_FILE_BYTES) + 1)
        if len(data) > size:  # it grew since: on up to the cap
            data += file.read(MAX_FILE_BYTES + 1 - len(data))
    if len(data) > MAX_FILE_BYTES:
        raise FileTooLarge(
            f"refused: larger than {MAX_FILE_BYTES // 1024:,} KiB; a policy is about 1 KiB, "
            "so split the file (a directory loads every file in it)"
        )
    return data


def _parse_bytes(data: bytes, path: Path) -> tuple[list[PolicyPlaces], list[Problem]]:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        return [], [Problem(path, line, None, "", "not UTF-8 text; save the file as UTF-8")]
    try:
        return parse_policy_text(text, path)
    except (RecursionError, ValueError) as exc:
        # yaml_limits bounds what we know of; anything past them is still this file's
        # problem alone: the other files must load.
        return [], [Problem(path, 0, None, "", f"cannot be read: {type(exc).__name__}: {clip(str(exc))}")]


@dataclass(frozen=True)
class ReloadResult:
    """What one ``PolicyStore.reload`` changed, by policy name, and what it refused."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def unchanged(self) -> bool:
        return not (self.added or self.changed or self.removed)


@dataclass
class _FileState:
    fingerprint: tuple[int, int]  # (mtime_ns, size): cheap check before hashing
    digest: str
    good: list[PolicyPlaces]  # what this file contributes to the effective set
    pending: list[PolicyPlaces] | None  # valid new content not accepted yet (it collided)
    problems: list[Problem]  # why the file's current content is not (yet) in effect
    # Modified so recently that a same-size rewrite in the same mtime tick would look
    # unchanged (git's "racy clean" problem): such a file is hashed again next time.
    racy: bool = False


class PolicyStore:
    """The effective policy set of some files and directories, reloaded on demand.

    Nothing is read until the first ``reload()`` (which then reports every policy as added).
    A file is re-parsed when its mtime, size or content hash changed. A file that is now
    broken keeps its last good policies (none if it never had any) and its problems are
    reported on every reload until it is fixed. Valid new content that would claim a name
    or service another file already holds is held back the same way, and retried on every
    reload (so it takes effect once the other file lets go). A deleted file's policies are
    removed.
    """

    def __init__(self, paths: Sequence[Path]) -> None:
        self._paths = list(paths)
        self._files: dict[Path, _FileState] = {}

    @property
    def policies(self) -> list[LoadedPolicy]:
        return [place.loaded for state in self._files.values() for place in state.good]

    def reload(self) -> ReloadResult:
        before = {p.policy.name: p.policy for p in self.policies}
        files, problems, unreadable = _expand(self._paths)
        current = {path: _refresh(path, self._files.get(path)) for path in files}
        # A directory we cannot list now (permissions, a symlink loop) keeps what it had:
        # only a file that is gone takes its policies with it.
        for path, state in self._files.items():
            if path not in current and (path in unreadable or path.parent in unreadable):
                current[path] = state
        _accept_pending(current)
        self._files = current
        for state in current.values():
            problems.extend(state.problems)
        after = {p.policy.name: p.policy for p in self.policies}
        return ReloadResult(
            added=sorted(after.keys() - before.keys()),
            changed=sorted(n for n in after.keys() & before.keys() if after[n] != before[n]),
            removed=sorted(before.keys() - after.keys()),
            problems=problems,
        )


def _refresh(path: Path, old: _FileState | None) -> _FileState:
    """The file's state after looking at it again; ``good`` is still the old one."""
    kept = old.good if old is not None else []
    try:
        stat = path.stat()
        fingerprint = (stat.st_mtime_ns, stat.st_size)
        if old is not None and old.fingerprint == fingerprint and not old.racy:
            return old
        data = _read_capped(path)
        racy = time.time_ns() - stat.st_mtime_ns < _RACY_WINDOW_NS
    except OSError as exc:
        return _FileState((0, 0), "", kept, None, [Problem(path, 0, None, "", _os_problem(exc))])
    except FileTooLarge as exc:
        return _FileState(fingerprint, "", kept, None, [Problem(path, 0, None, "", str(exc))])
    digest = hashlib.sha256(data).hexdigest()
    if old is not None and old.digest == digest:
        # Touched but not edited (a save without changes, a checkout): nothing to parse.
        return _FileState(fingerprint, digest, old.good, old.pending, old.problems, racy)
    places, problems = _parse_bytes(data, path)
    if problems:
        return _FileState(fingerprint, digest, kept, None, problems, racy)
    return _FileState(fingerprint, digest, kept, places, [], racy)


def _accept_pending(files: dict[Path, _FileState]) -> None:
    """Put each file's pending policies in effect unless they collide; roll back those that do.

    Settled policies come first in the collision check so the blame (which falls on the
    later of two colliding policies) always lands on pending ones. Every round removes at
    least one file from ``pending``, and the settled set had no collisions, so this ends.
    """
    pending = {path for path, state in files.items() if state.pending is not None}
    while True:
        settled = [place for path, state in files.items() if path not in pending for place in state.good]
        proposed = [place for path in files if path in pending for place in files[path].pending or []]
        collisions = check_collisions(settled + proposed)
        blamed_files = {blamed.loaded.path for blamed, _ in collisions} & pending
        if not blamed_files:
            break
        for path in blamed_files:
            pending.discard(path)
            files[path].problems = [problem for blamed, problem in collisions if blamed.loaded.path == path]
    for path in pending:
        state = files[path]
        state.good, state.pending, state.problems = state.pending or [], None, []
