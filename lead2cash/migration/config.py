"""The migration YAML: mapping, value maps, duplicate rules, gates and waivers. Errors name file, line, field."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import YAMLError

from lead2cash.config.errors import ConfigError, ConfigIssue

TRANSFORMS = {"trim", "yyyymmdd", "amount"}
CLEANSE_RULES = {"repair_encoding", "collapse_spaces", "lower", "upper", "e164"}
CHECKS = {
    "required",
    "unique",
    "in_set",
    "email",
    "e164",
    "tax_id",
    "mojibake",
    "duplicates",
    "type",
    "reference",
    "not_null",
    "positive",
    "currency_match",
    "not_future",
    "overlap",
    "anniversary",
    "lines_total",
    "net_plus_tax",
    "control_total",
}


@dataclass
class FieldMap:
    name: str
    source: str
    transform: list[str]
    cleanse: list[str]
    value_map: str | None
    rule: str | None


@dataclass
class TableMap:
    name: str
    legacy: str
    key: str
    fields: dict[str, FieldMap]
    unmapped: dict[str, str]


@dataclass
class Gate:
    name: str
    table: str
    check: str
    max_rate: float
    params: dict[str, Any]
    defect: str | None = None
    waiver: dict[str, str] | None = None


@dataclass
class MigrationConfig:
    path: Path
    as_of: str
    tables: dict[str, TableMap]
    value_maps: dict[str, dict[str, str]]
    plan_months: dict[str, int]
    duplicates: dict[str, Any]
    gates: list[Gate] = field(default_factory=list)


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def load_config(path: Path) -> MigrationConfig:
    issues: list[ConfigIssue] = []
    file = str(path)

    def issue(node: Any, key: Any, where: str, message: str) -> None:
        line = col = None
        if isinstance(node, CommentedMap) and key in node:
            line, col = node.lc.key(key)
        elif isinstance(node, CommentedSeq) and isinstance(key, int):
            line, col = node.lc.item(key)
        elif hasattr(node, "lc"):
            line, col = node.lc.line, node.lc.col
        issues.append(
            ConfigIssue(
                file, None if line is None else line + 1, None if col is None else col + 1, where, message
            )
        )

    try:
        doc = YAML().load(path.read_text())
    except (OSError, YAMLError) as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            [ConfigIssue(file, mark.line + 1 if mark else None, None, "", f"cannot read: {exc}")]
        ) from None
    if not isinstance(doc, CommentedMap):
        raise ConfigError([ConfigIssue(file, 1, None, "", "expected a mapping")])
    value_maps = {
        str(k): {str(a): str(b) for a, b in (v or {}).items()}
        for k, v in (doc.get("value_maps") or {}).items()
    }
    tables: dict[str, TableMap] = {}
    for tname, tnode in (doc.get("tables") or {}).items():
        where = f"tables.{tname}"
        if not isinstance(tnode, CommentedMap) or "legacy" not in tnode:
            issue(doc["tables"], tname, where, "a table needs 'legacy' (the legacy table name) and 'fields'")
            continue
        fields: dict[str, FieldMap] = {}
        for fname, fnode in (tnode.get("fields") or {}).items():
            fwhere = f"{where}.fields.{fname}"
            if not isinstance(fnode, CommentedMap) or "from" not in fnode:
                issue(tnode["fields"], fname, fwhere, "a field needs 'from' (the legacy column)")
                continue
            transform, cleanse = _as_list(fnode.get("transform")), _as_list(fnode.get("cleanse"))
            for t in transform:
                if t not in TRANSFORMS:
                    issue(
                        fnode,
                        "transform",
                        f"{fwhere}.transform",
                        f"unknown transform {t!r}; known: {', '.join(sorted(TRANSFORMS))}",
                    )
            for c in cleanse:
                if c not in CLEANSE_RULES:
                    issue(
                        fnode,
                        "cleanse",
                        f"{fwhere}.cleanse",
                        f"unknown cleanse rule {c!r}; known: {', '.join(sorted(CLEANSE_RULES))}",
                    )
            vmap = fnode.get("value_map")
            if vmap is not None and str(vmap) not in value_maps:
                issue(fnode, "value_map", f"{fwhere}.value_map", f"no value map {vmap!r} under value_maps")
            fields[str(fname)] = FieldMap(
                str(fname),
                str(fnode["from"]),
                transform,
                cleanse,
                None if vmap is None else str(vmap),
                None if fnode.get("rule") is None else str(fnode["rule"]),
            )
        tables[str(tname)] = TableMap(
            str(tname),
            str(tnode["legacy"]),
            str(tnode.get("key", next(iter(fields), ""))),
            fields,
            {str(k): str(v) for k, v in (tnode.get("unmapped") or {}).items()},
        )
    waivers = {}
    for i, w in enumerate(doc.get("waivers") or []):
        if not isinstance(w, CommentedMap) or not all(w.get(k) for k in ("gate", "reason", "by")):
            issue(doc["waivers"], i, f"waivers[{i}]", "a waiver needs gate, reason and by (who waived it)")
            continue
        waivers[str(w["gate"])] = {"reason": str(w["reason"]), "by": str(w["by"])}
    gates: list[Gate] = []
    for i, g in enumerate(doc.get("gates") or []):
        where = f"gates[{i}]"
        if not isinstance(g, CommentedMap):
            issue(doc["gates"], i, where, "a gate is a mapping")
            continue
        missing = [k for k in ("name", "table", "check") if k not in g]
        if missing:
            issue(doc["gates"], i, where, f"missing {', '.join(missing)}")
            continue
        if g["check"] not in CHECKS:
            issue(
                g,
                "check",
                f"{where}.check",
                f"unknown check {g['check']!r}; known: {', '.join(sorted(CHECKS))}",
            )
        if g["table"] not in tables:
            issue(g, "table", f"{where}.table", f"no table {g['table']!r} under tables")
        try:
            rate = float(g.get("max_rate", 0))
        except (TypeError, ValueError):
            issue(g, "max_rate", f"{where}.max_rate", "a rate between 0 and 1")
            rate = 0.0
        params = {k: v for k, v in g.items() if k not in ("name", "table", "check", "max_rate", "defect")}
        gates.append(
            Gate(
                str(g["name"]),
                str(g["table"]),
                str(g["check"]),
                rate,
                params,
                None if g.get("defect") is None else str(g["defect"]),
                waivers.pop(str(g["name"]), None),
            )
        )
    for name in waivers:
        issues.append(ConfigIssue(file, None, None, "waivers", f"waiver for unknown gate {name!r}"))
    if issues:
        raise ConfigError(issues)
    return MigrationConfig(
        path,
        str(doc.get("as_of", "")),
        tables,
        value_maps,
        {str(k): int(v) for k, v in (doc.get("plan_months") or {}).items()},
        dict(doc.get("duplicates") or {}),
        gates,
    )
