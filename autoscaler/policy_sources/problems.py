"""What is wrong with a policy file, and where: the unit every loader error is made of."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from autoscaler.errors import PolicyError

# Text from a policy file quoted in a message (a value, a key) is cut to this: a message
# says what is wrong, and a 5 MB value must not become a 5 MB log line or HTTP answer.
MAX_QUOTED_CHARS = 80


def clip(text: str, limit: int = MAX_QUOTED_CHARS) -> str:
    """``text`` if short, else its start and how long it really was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


@dataclass(frozen=True)
class Problem:
    """One thing wrong in one file.

    ``line`` is 1-based; 0 means the problem concerns the whole file (it does not exist,
    cannot be read), so there is no line to point at. ``column`` (1-based) is only known for
    YAML syntax errors and values their tag refuses. ``field`` is the camelCase YAML path
    (``spec.metrics[0].target``), empty when the problem is not about one field.
    """

    path: Path
    line: int
    column: int | None
    field: str
    message: str

    def location(self) -> str:
        """``path:line: field``: where the problem is, never what the file says there.

        The message is left out because it quotes the file's values; the field is the
        YAML path (its keys cut to 80 characters each by ``format_path``).
        """
        where = f"{self.path}:{self.line}" if self.line > 0 else str(self.path)
        return f"{where}: {self.field}" if self.field else where

    def __str__(self) -> str:
        # Compiler-style "path:line:column:" so editors and CI annotators can jump to it.
        where = str(self.path)
        if self.line > 0:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
        }


class PolicyLoadError(PolicyError):
    """One or more policy files are invalid; ``problems`` holds every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        count = len(problems)
        summary = f"{count} problem{'s' if count != 1 else ''} in policy files"
        super().__init__(summary, [str(p) for p in problems])
        # PolicyError keeps the rendered strings; this keeps the structured form.
        self.problems: list[Problem] = list(problems)  # type: ignore[assignment]

    def __str__(self) -> str:
        return "\n".join([self.args[0], *(f"  {p}" for p in self.problems)])
