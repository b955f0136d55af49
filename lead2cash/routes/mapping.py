"""Message translator pieces: JMESPath filters, field overrides, named value maps and key templates.

All expressions are JMESPath compiled once when the route is built; nothing from config is evaluated as
Python.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import jmespath
from jmespath.parser import ParsedResult
from pydantic import BaseModel

from lead2cash.routes.errors import MappingError
from lead2cash.routes.interfaces import KeyFunction, Mapper, Predicate

_PLACEHOLDER = re.compile(r"\{([^{}]+)\}")


def compile_expression(expression: str) -> ParsedResult:
    """Compile a JMESPath expression; raises ``jmespath.exceptions.ParseError`` with the position."""
    return jmespath.compile(expression)


def build_filter(expression: str) -> Predicate:
    compiled = compile_expression(expression)

    def predicate(record: Mapping[str, Any]) -> bool:
        return bool(compiled.search(record))

    return predicate


_FIELD_PATH = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")


def unknown_fields(template: str, entity: type[BaseModel]) -> list[str]:
    """The placeholders of a key template that name a field path the entity does not have (a typo that
    would otherwise dead-letter every record). Placeholders that are more than a field path (functions,
    projections) and paths into maps are not judged."""
    unknown = []
    for match in _PLACEHOLDER.finditer(template):
        path = match.group(1).strip()
        if not _FIELD_PATH.match(path):
            continue
        model: type[BaseModel] | None = entity
        for part in path.split("."):
            if model is None or "root" in model.model_fields:
                break
            field = model.model_fields.get(part)
            if field is None:
                unknown.append(path)
                break
            model = next(
                (a for a in _classes(field.annotation) if isinstance(a, type) and issubclass(a, BaseModel)),
                None,
            )
    return unknown


def _classes(tp: Any) -> list[Any]:
    args = getattr(tp, "__args__", None)
    return [tp] if not args else [c for a in args for c in _classes(a)]


class KeyTemplate:
    """``"order:{refs.salesforce}:v{version}"``: each ``{...}`` is a JMESPath over the entity's JSON form."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.parts: list[str | ParsedResult] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(template):
            self.parts.append(template[pos : match.start()])
            self.parts.append(compile_expression(match.group(1).strip()))
            pos = match.end()
        self.parts.append(template[pos:])
        if not any(isinstance(p, ParsedResult) for p in self.parts):
            raise ValueError(
                "a key template needs at least one {expression}: a constant key would merge records"
            )

    def render(self, data: Mapping[str, Any]) -> str:
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                continue
            value = part.search(data)
            if value is None or value == "":
                raise MappingError(part.expression, f"key template {self.template!r} found no value")
            out.append(str(value))
        return "".join(out)

    def for_entities(self) -> KeyFunction:
        def key(entity: BaseModel) -> str:
            return self.render(entity.model_dump(mode="json"))

        return key


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def _get_path(data: Mapping[str, Any], path: str) -> Any:
    node: Any = data
    for part in path.split("."):
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def apply_value_map(table_name: str, table: Mapping[str, Any], value: Any, field: str) -> Any:
    key = str(value)
    if key in table:
        return table[key]
    if "_default" in table:
        return table["_default"]
    raise MappingError(field, f"value {key!r} is not in value map {table_name!r} and it has no _default")


def build_mapper(
    adapter: Callable[[Mapping[str, Any]], BaseModel | Mapping[str, Any]],
    entity_type: type[BaseModel],
    *,
    fields: Mapping[str, str] | None = None,
    value_maps: Mapping[str, str] | None = None,
    tables: Mapping[str, Mapping[str, Any]] | None = None,
) -> Mapper:
    """Adapter output (a canonical entity or its dict form), then field overrides (canonical path ->
    JMESPath over the source record), then named value maps (canonical path -> table), then validation."""
    overrides = {path: compile_expression(expr) for path, expr in (fields or {}).items()}
    maps = dict(value_maps or {})
    tables = tables or {}
    for table in maps.values():
        if table not in tables:
            raise ValueError(f"value map {table!r} is not defined under mappings")

    def mapper(record: Mapping[str, Any]) -> BaseModel:
        result = adapter(record)
        if not overrides and not maps:
            return result if isinstance(result, BaseModel) else entity_type.model_validate(result)
        data = result.model_dump(mode="json") if isinstance(result, BaseModel) else dict(result)
        for path, compiled in overrides.items():
            _set_path(data, path, compiled.search(record))
        for path, table in maps.items():
            current = _get_path(data, path)
            if current is not None:
                _set_path(data, path, apply_value_map(table, tables[table], current, path))
        return entity_type.model_validate(data)

    return mapper
