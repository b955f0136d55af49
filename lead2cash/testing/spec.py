"""Config test files: the schema, and loading with the line of every test and of every problem.

```yaml
sandbox: {seed: 42, seed_size: 30}        # how delivery tests start the sandboxes (optional)
tests:
  - name: a won deal becomes an order
    route: won-opportunity-to-billing
    input: {file: fixtures/salesforce-opportunity-won.json}   # or {record: {...}}; set: {path: value}
    expect:
      key: "order:006Dx0000000006IAA:v{version}"
      canonical: {currency: USD, lines: [...]}               # a subset of the canonical JSON
      target: {one_off_invoice: {currency: USD}}             # a subset of the target's preview
  - name: a lost response after the invoice was created is not a second invoice
    route: won-opportunity-to-billing
    sandbox: true
    input: {file: fixtures/salesforce-opportunity-won.json}
    faults:
      lago: {"invoices.create": {commit_then_drop_rate: 1.0}}
    expect:
      delivered: once
      effects: {lago: {"invoice.metadata": {"lead2cash_key={key}": 1}}}
```
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from lead2cash.config.base import Duration
from lead2cash.sandbox.faults import FaultRule


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class InputSpec(_Strict):
    record: dict[str, Any] | None = Field(None, description="the source record, inline")
    file: str | None = Field(None, description="a JSON file holding the record (relative to the test file)")
    set: dict[str, Any] = Field(
        default_factory=dict, description="dotted path -> value to change in the record (a variant)"
    )

    @model_validator(mode="after")
    def _one(self) -> InputSpec:
        if (self.record is None) == (self.file is None):
            raise ValueError("give exactly one of record or file")
        return self


class DeadLetterExpect(_Strict):
    reason_contains: str | None = None
    stage: Literal["mapping", "delivery"] | None = None


class Expect(_Strict):
    filtered: bool | None = Field(None, description="true: the route's filter drops the record")
    key: str | None = Field(
        None,
        description="the idempotency key, exactly; '{version}' stands for the canonical record's version "
        "(a content fingerprint: pinning its digits would test the hash function, not the route)",
    )
    canonical: dict[str, Any] | None = Field(None, description="a subset of the canonical record (JSON)")
    target: dict[str, Any] | None = Field(
        None,
        description="a subset of the target's payload preview; '{key}' in a string is the idempotency key",
    )
    dead_letter: DeadLetterExpect | None = None
    delivered: Literal["once"] | None = Field(None, description="sandbox tests: applied exactly once")
    effects: dict[str, dict[str, dict[str, int]]] = Field(
        default_factory=dict,
        description="sandbox tests: {system: {effect kind: {key: count}}}; '{key}' is the idempotency key",
    )


class Faults(_Strict):
    """Per system: ``{operation or "*": FaultRule}`` as the sandboxes' ``PUT /__sandbox/faults`` takes it."""

    model_config = ConfigDict(extra="allow", frozen=True)

    duplicate_delivery: int = Field(1, ge=1, le=100, description="submit the record this many times")
    clear_after: Duration | None = Field(
        None, description="lift the faults after this long (a passing outage)"
    )

    @model_validator(mode="after")
    def _rules(self) -> Faults:
        for system, rules in (self.model_extra or {}).items():
            if not isinstance(rules, dict):
                raise ValueError(f"{system}: expected {{operation: fault settings}}")
            for operation, rule in rules.items():
                if not isinstance(rule, dict):
                    raise ValueError(f"{system}.{operation}: expected fault settings")
                try:
                    FaultRule.from_dict(rule)
                except (TypeError, ValueError) as exc:
                    raise ValueError(f"{system}.{operation}: {exc}") from None
        return self

    @property
    def systems(self) -> dict[str, dict[str, dict[str, Any]]]:
        return dict(self.model_extra or {})


class ConfigTest(_Strict):
    name: str
    route: str
    input: InputSpec
    sandbox: bool = Field(False, description="deliver through the route to the sandboxes")
    faults: Faults = Field(default_factory=lambda: Faults())
    timeout: Duration = Field(60.0, description="sandbox tests: give up delivering after this long")
    expect: Expect

    @model_validator(mode="after")
    def _consistent(self) -> ConfigTest:
        e = self.expect
        faulted = bool(self.faults.systems) or self.faults.duplicate_delivery > 1
        if not self.sandbox and (e.delivered or e.effects or faulted):
            raise ValueError("delivered, effects and faults need sandbox: true")
        if e.filtered and (e.canonical or e.key or e.target or e.dead_letter or e.delivered):
            raise ValueError("a filtered record has no canonical form, key, target or delivery")
        return self


class SandboxSettings(_Strict):
    seed: int = 42
    seed_size: int = Field(30, ge=0, le=5000)


class ConfigTestFile(_Strict):
    sandbox: SandboxSettings = Field(default_factory=lambda: SandboxSettings())
    tests: list[ConfigTest]

    @field_validator("tests")
    @classmethod
    def _names(cls, tests: list[ConfigTest]) -> list[ConfigTest]:
        seen: set[str] = set()
        for t in tests:
            if t.name in seen:
                raise ValueError(f"duplicate test name {t.name!r}")
            seen.add(t.name)
        return tests


class ConfigTestFileError(Exception):
    """Problems in a test file, each ``file:line: field: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LoadedTests:
    def __init__(self, path: Path, spec: ConfigTestFile, lines: list[int]) -> None:
        self.path = path
        self.spec = spec
        self.lines = lines  # line of each test in the file

    def record(self, case: ConfigTest) -> dict[str, Any]:
        """The test's input record (a fresh copy each time, with ``set`` applied)."""
        if case.input.file is not None:
            source = self.path.parent / case.input.file
            try:
                data = json.loads(source.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise ConfigTestFileError(
                    [f"{self.path}: {case.name}: cannot read input file {source}: {exc}"]
                ) from None
        else:
            data = json.loads(json.dumps(case.input.record))
        if not isinstance(data, dict):
            raise ConfigTestFileError([f"{self.path}: {case.name}: the input record must be a JSON object"])
        for dotted, value in case.input.set.items():
            _set(data, dotted, value)
        return data


def _set(data: Any, dotted: str, value: Any) -> None:
    parts: list[str | int] = [int(p) if p.isdigit() else p for p in dotted.split(".")]
    node = data
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _plain(node: Any) -> Any:
    if isinstance(node, CommentedMap):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, CommentedSeq):
        return [_plain(v) for v in node]
    return node


def _line_of(doc: Any, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node of ``loc`` that exists in the document."""
    node, line = doc, 1
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def load_tests(path: Path) -> LoadedTests:
    try:
        doc = YAML(typ="rt").load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigTestFileError([f"{path}: cannot read: {exc.strerror}"]) from None
    except MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigTestFileError(
            [f"{path}:{mark.line + 1 if mark else '?'}: YAML syntax error: {exc.problem}"]
        ) from None
    try:
        spec = ConfigTestFile.model_validate(_plain(doc))
    except ValidationError as exc:
        problems = []
        for err in exc.errors(include_input=False, include_url=False):
            loc = tuple(err["loc"])
            field = ".".join(str(p) for p in loc) or "<root>"
            message = "unknown key (misspelt?)" if err["type"] == "extra_forbidden" else err["msg"]
            problems.append(f"{path}:{_line_of(doc, loc)}: {field}: {message.removeprefix('Value error, ')}")
        raise ConfigTestFileError(problems) from None
    lines = [doc["tests"].lc.item(i)[0] + 1 for i in range(len(spec.tests))]
    return LoadedTests(path, spec, lines)


def find_test_files(paths: list[Path]) -> list[Path]:
    """Files as given; directories: their ``*.yaml``/``*.yml`` files (not recursive, so a fixtures folder
    beside them is never read as tests)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(f for f in p.iterdir() if f.suffix in (".yaml", ".yml") and f.is_file()))
        else:
            out.append(p)
    return out
