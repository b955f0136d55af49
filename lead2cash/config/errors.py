"""Config errors that name the file, line, column and field, and say what was expected."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ConfigIssue:
    file: str
    line: int | None
    column: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        return f"{where}: {self.field or '<root>'}: {self.message}"


class ConfigError(Exception):
    def __init__(self, issues: list[ConfigIssue], partial: Any = None) -> None:
        self.issues = issues
        # The parts of the config that did validate (a ``LoadedConfig`` without the broken systems and
        # routes), so `check` can go on and report their build problems in the same run.
        self.partial = partial
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"{len(issues)} configuration error(s):\n{lines}")


class ConfigProblems(Exception):
    """Raised while building parts from a valid schema (an unknown adapter, a plan code the target lacks):
    problems with paths relative to the part, turned into positioned ConfigIssues by the hub."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{'.'.join(map(str, p))}: {m}" for p, m in problems))
