"""Load YAML config files: positions for every node, ``${VAR}`` / ``${VAR:-default}`` / ``${file:path}``
interpolation, validation against the schema, and cross-checks (unknown systems, duplicate route names,
undefined value maps). Every problem is reported, not only the first, with file, line, column and field.
A file over 4 MiB, past 250,000 values with its aliases expanded, or nested too deeply is refused before
it is walked."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from lead2cash.config.errors import ConfigError, ConfigIssue
from lead2cash.config.schema import HubConfig

_REF = re.compile(r"\$\{([^}]*)\}")
# A config file is kilobytes; these bounds keep a hostile one (an alias bomb, a huge or deeply nested
# document) from taking the process's memory before any error can be shown.
MAX_FILE_BYTES = 4 * 2**20
MAX_VALUES = 250_000
_SECRET_NAME = re.compile(r"(SECRET|TOKEN|PASSWORD|PASSWD|KEY|CREDENTIAL)", re.IGNORECASE)
Path_ = tuple[str | int, ...]


@dataclass
class LoadedConfig:
    config: HubConfig
    files: list[Path]
    positions: dict[Path_, tuple[str, int, int]] = field(default_factory=dict)
    secrets: set[str] = field(default_factory=set)
    # For a salvaged partial config: the index in the files of each route kept (``routes[i]`` here).
    route_index: list[int] | None = None

    def original_field(self, dotted: str) -> str:
        """A field path of this config as the files number it (a partial config drops broken routes)."""
        if self.route_index is None:
            return dotted
        m = re.match(r"routes\[(\d+)\]", dotted)
        if not m:
            return dotted
        return f"routes[{self.route_index[int(m.group(1))]}]" + dotted[m.end() :]

    def locate(self, path: Sequence[str | int]) -> tuple[str, int | None, int | None]:
        key = tuple(path)
        while key:
            if key in self.positions:
                f, line, col = self.positions[key]
                return f, line, col
            key = key[:-1]
        return (str(self.files[0]) if self.files else "<config>"), None, None

    def issue(self, path: Sequence[str | int], message: str) -> ConfigIssue:
        f, line, col = self.locate(path)
        return ConfigIssue(f, line, col, _dotted(path), message)


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


class _Walker:
    """Turns ruamel nodes into plain data, recording positions and interpolating references."""

    def __init__(self, file: str, base_dir: Path, environ: Mapping[str, str]) -> None:
        self.file = file
        self.base_dir = base_dir
        self.environ = environ
        self.positions: dict[Path_, tuple[str, int, int]] = {}
        self.issues: list[ConfigIssue] = []
        self.bad_paths: list[Path_] = []
        self.secrets: set[str] = set()

    def walk(self, node: Any, path: Path_, pos: tuple[int, int] | None) -> Any:
        if pos is not None:
            self.positions[path] = (self.file, pos[0] + 1, pos[1] + 1)
        if isinstance(node, CommentedMap):
            if path not in self.positions:
                self.positions[path] = (self.file, node.lc.line + 1, node.lc.col + 1)
            out: dict[str, Any] = {}
            for key in node:
                kpos = node.lc.key(key)
                vpos = node.lc.value(key)
                child = (*path, str(key))
                self.positions[(*child, "<key>")] = (self.file, kpos[0] + 1, kpos[1] + 1)
                out[str(key)] = self.walk(node[key], child, vpos if vpos else kpos)
            return out
        if isinstance(node, CommentedSeq):
            return [self.walk(item, (*path, i), node.lc.item(i)) for i, item in enumerate(node)]
        if isinstance(node, str):
            return self.interpolate(node, path)
        return node

    def interpolate(self, value: str, path: Path_) -> str:
        def replace(match: re.Match[str]) -> str:
            ref = match.group(1).strip()
            if ref.startswith("file:"):
                target = Path(os.path.expanduser(ref[5:].strip()))
                if not target.is_absolute():
                    target = self.base_dir / target
                try:
                    text = target.read_text(encoding="utf-8").strip()
                except OSError as exc:
                    self._issue(path, f"cannot read secret file {target}: {exc.strerror}")
                    return ""
                self.secrets.add(text)
                return text
            name, _, default = ref.partition(":-")
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                self._issue(
                    path,
                    f"invalid reference ${{{ref}}}: expected ${{VAR}}, ${{VAR:-default}} or ${{file:path}}",
                )
                return ""
            if name in self.environ:
                resolved = self.environ[name]
            elif ":-" in ref:
                resolved = default
            else:
                self._issue(path, f"environment variable {name} is not set (referenced as ${{{name}}})")
                return ""
            if _SECRET_NAME.search(name):
                self.secrets.add(resolved)
            return resolved

        return _REF.sub(replace, value)

    def _issue(self, path: Path_, message: str) -> None:
        f, line, col = self.positions.get(path, (self.file, None, None))
        self.issues.append(ConfigIssue(f, line, col, _dotted(path), message))
        self.bad_paths.append(path)


class _TooLarge(Exception):
    def __init__(self, issue: ConfigIssue) -> None:
        super().__init__(str(issue))
        self.issue = issue


def _bounded(doc: Any, file: str) -> None:
    """Count the values the document holds once its aliases are expanded (each anchored node is counted
    once, so this costs the file's size, not the expansion's); raise at the innermost node past the bound."""
    sizes: dict[int, int] = {}
    aliased = False

    def size(node: Any) -> int:
        nonlocal aliased
        if not isinstance(node, CommentedMap | CommentedSeq):
            return 1
        known = sizes.get(id(node))
        if known is not None:
            aliased = True
            return known
        total = 1
        for child in node.values() if isinstance(node, CommentedMap) else node:
            total += size(child)
            if total > MAX_VALUES:
                message = f"the file holds more than {MAX_VALUES:,} values" + (
                    " once its aliases (*name) are expanded; refusing to load it (a YAML alias bomb?)"
                    if aliased
                    else "; refusing to load it"
                )
                raise _TooLarge(ConfigIssue(file, node.lc.line + 1, node.lc.col + 1, "", message))
        sizes[id(node)] = total
        return total

    size(doc)


def _merge(
    files: list[Path], environ: Mapping[str, str]
) -> tuple[dict[str, Any], _Walker, list[ConfigIssue]]:
    merged: dict[str, Any] = {}
    positions: dict[Path_, tuple[str, int, int]] = {}
    issues: list[ConfigIssue] = []
    secrets: set[str] = set()
    walker_issues: list[ConfigIssue] = []
    bad_paths: list[Path_] = []
    yaml = YAML(typ="rt")
    for path in files:
        try:
            with path.open("rb") as handle:
                raw = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            issues.append(ConfigIssue(str(path), None, None, "", f"cannot read: {exc.strerror}"))
            continue
        if len(raw) > MAX_FILE_BYTES:
            issues.append(
                ConfigIssue(str(path), None, None, "", f"file is larger than {MAX_FILE_BYTES // 2**20} MiB")
            )
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            at = raw[: exc.start].count(b"\n") + 1
            issues.append(ConfigIssue(str(path), at, None, "", "not UTF-8 text"))
            continue
        try:
            doc = yaml.load(text)
            _bounded(doc, str(path))
        except _TooLarge as exc:
            issues.append(exc.issue)
            continue
        except RecursionError:
            issues.append(ConfigIssue(str(path), None, None, "", "the YAML is nested too deeply"))
            continue
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            issues.append(
                ConfigIssue(
                    str(path),
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    "",
                    f"YAML syntax error: {exc.problem or exc.context}",
                )
            )
            continue
        if doc is None:
            continue
        walker = _Walker(str(path), path.parent, environ)
        data = walker.walk(doc, (), None)
        issues.extend(walker.issues)
        walker_issues.extend(walker.issues)
        secrets |= walker.secrets
        offset = len(merged.get("routes", []))
        for p in walker.bad_paths:
            routed = p and p[0] == "routes" and len(p) > 1 and isinstance(p[1], int)
            bad_paths.append(("routes", p[1] + offset, *p[2:]) if routed else p)  # type: ignore[operator]
        if not isinstance(data, dict):
            issues.append(ConfigIssue(str(path), 1, 1, "", "expected a mapping at the top level"))
            continue
        offset = len(merged.get("routes", []))
        for key, value in data.items():
            if key == "routes" and isinstance(value, list):
                merged.setdefault("routes", []).extend(value)
            elif key in {"systems", "mappings"} and isinstance(value, dict):
                section = merged.setdefault(key, {})
                for name in value:
                    if name in section:
                        f, line, col = walker.positions.get((key, name, "<key>"), (str(path), None, None))
                        issues.append(
                            ConfigIssue(
                                f, line, col, f"{key}.{name}", f"{key[:-1]} {name!r} is defined twice"
                            )
                        )
                section.update(value)
            elif key in merged:
                f, line, col = walker.positions.get((key, "<key>"), (str(path), None, None))
                issues.append(ConfigIssue(f, line, col, key, "section is defined in more than one file"))
            else:
                merged[key] = value
        for p, where in walker.positions.items():
            if p and p[0] == "routes" and len(p) > 1 and isinstance(p[1], int):
                positions[("routes", p[1] + offset, *p[2:])] = where
            else:
                positions.setdefault(p, where)
    combined = _Walker(str(files[0]) if files else "<config>", Path.cwd(), environ)
    combined.positions = positions
    combined.secrets = secrets
    combined.issues, combined.bad_paths = walker_issues, bad_paths
    return merged, combined, issues


def _collect_secrets(value: Any, found: set[str]) -> None:
    if isinstance(value, SecretStr):
        found.add(value.get_secret_value())
    elif isinstance(value, dict):
        for v in value.values():
            _collect_secrets(v, found)
    elif isinstance(value, list | tuple):
        for v in value:
            _collect_secrets(v, found)
    elif isinstance(value, BaseModel):
        for name in type(value).model_fields:
            _collect_secrets(getattr(value, name), found)


def _cross_check(data: dict[str, Any], loaded: LoadedConfig) -> list[ConfigIssue]:
    """Checks across sections, on the raw data so they are reported together with schema errors."""
    issues: list[ConfigIssue] = []
    raw_systems, raw_mappings, raw_routes = data.get("systems"), data.get("mappings"), data.get("routes")
    systems: dict[str, Any] = raw_systems if isinstance(raw_systems, dict) else {}
    mappings: dict[str, Any] = raw_mappings if isinstance(raw_mappings, dict) else {}
    routes: list[Any] = raw_routes if isinstance(raw_routes, list) else []
    seen: dict[str, int] = {}
    for i, route in enumerate(routes):
        if not isinstance(route, dict):
            continue
        name = route.get("name")
        if isinstance(name, str):
            if name in seen:
                issues.append(
                    loaded.issue(
                        ("routes", i, "name"),
                        f"duplicate route name {name!r} (first at routes[{seen[name]}])",
                    )
                )
            seen.setdefault(name, i)
        for part in ("source", "target"):
            section = route.get(part)
            system = section.get("system") if isinstance(section, dict) else None
            if isinstance(system, str) and system not in systems:
                known = ", ".join(sorted(systems)) or "none"
                issues.append(
                    loaded.issue(
                        ("routes", i, part, "system"), f"unknown system {system!r}; defined systems: {known}"
                    )
                )
        mapping = route.get("mapping")
        value_maps = mapping.get("value_maps") if isinstance(mapping, dict) else None
        if isinstance(value_maps, dict):
            for canonical_path, table in value_maps.items():
                if isinstance(table, str) and table not in mappings:
                    issues.append(
                        loaded.issue(
                            ("routes", i, "mapping", "value_maps", canonical_path),
                            f"value map {table!r} is not defined under mappings",
                        )
                    )
    return issues


def _without_union_tags(loc: tuple[str | int, ...], data: Any, *, keep_last: bool) -> tuple[str | int, ...]:
    """Discriminated unions put the tag in the loc (``systems.lago.lago.api_key``): drop every element that
    is not a key of the data at that point but is the value of one of its fields (the discriminator), so the
    path is the one in the file and the position found is the field's own."""
    out: list[str | int] = []
    node: Any = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        if (
            isinstance(part, str)
            and isinstance(node, Mapping)
            and part not in node
            and any(v == part for v in node.values() if isinstance(v, str))
            and not (last and keep_last)
        ):
            continue
        out.append(part)
        if isinstance(node, Mapping):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _salvage(data: dict[str, Any], bad: list[Path_], loaded: LoadedConfig) -> LoadedConfig | None:
    """The config without the parts that failed: each system, mapping table or route with an error (and
    every route over a dropped or unknown system) left out, a broken top-level section back to its
    default. Routes keep their original index in positions, so later problems point at the right line.
    None when what is left still does not validate."""
    raw_systems, raw_mappings, raw_routes = data.get("systems"), data.get("mappings"), data.get("routes")
    systems: dict[str, Any] = raw_systems if isinstance(raw_systems, dict) else {}
    mappings: dict[str, Any] = raw_mappings if isinstance(raw_mappings, dict) else {}
    routes: list[Any] = raw_routes if isinstance(raw_routes, list) else []
    drop_sections: set[str] = set()
    drop_systems: set[str] = set()
    drop_mappings: set[str] = set()
    drop_routes: set[int] = set()
    for loc in bad:
        section = str(loc[0]) if loc else ""
        if section == "systems" and len(loc) > 1:
            drop_systems.add(str(loc[1]))
        elif section == "mappings" and len(loc) > 1:
            drop_mappings.add(str(loc[1]))
        elif section == "routes" and len(loc) > 1 and isinstance(loc[1], int):
            drop_routes.add(loc[1])
        elif section:
            drop_sections.add(section)
    kept_systems = {k: v for k, v in systems.items() if k not in drop_systems}
    kept_mappings = {k: v for k, v in mappings.items() if k not in drop_mappings}
    names: set[str] = set()
    keep: list[int] = []
    for i, route in enumerate(routes):
        if i in drop_routes or not isinstance(route, dict):
            continue
        refs = [(route.get(part) or {}).get("system") for part in ("source", "target")]
        maps = (route.get("mapping") or {}).get("value_maps") or {}
        if not isinstance(maps, dict):
            continue
        if any(r not in kept_systems for r in refs) or route.get("name") in names:
            continue
        if any(isinstance(t, str) and t not in kept_mappings for t in maps.values()):
            continue
        names.add(route.get("name"))  # type: ignore[arg-type]
        keep.append(i)
    partial = {k: v for k, v in data.items() if k not in drop_sections}
    partial.update(systems=kept_systems, mappings=kept_mappings, routes=[routes[i] for i in keep])
    try:
        config = HubConfig.model_validate(partial)
    except ValidationError:
        return None
    positions = {}
    for key, pos in loaded.positions.items():
        if key[:1] == ("routes",) and len(key) > 1:
            if key[1] not in keep:
                continue
            key = ("routes", keep.index(key[1]), *key[2:])
        positions[key] = pos
    salvaged = LoadedConfig(config=config, files=loaded.files, positions=positions, secrets=loaded.secrets)
    salvaged.route_index = keep
    return salvaged


def load_config(
    paths: str | Path | Sequence[str | Path], environ: Mapping[str, str] | None = None
) -> LoadedConfig:
    """Load and validate config file(s); raises ConfigError listing every problem found."""
    files = [Path(paths)] if isinstance(paths, str | Path) else [Path(p) for p in paths]
    env = os.environ if environ is None else environ
    data, walker, issues = _merge(files, env)
    loaded = LoadedConfig(
        config=HubConfig(), files=files, positions=walker.positions, secrets=set(walker.secrets)
    )
    # Problems of the files themselves (unreadable, not YAML) leave nothing to salvage; a missing
    # environment variable leaves everything but the part that names it.
    salvageable = len(issues) == len(walker.issues)
    bad: list[Path_] = list(walker.bad_paths)
    try:
        loaded.config = HubConfig.model_validate(data)
    except ValidationError as exc:
        for err in exc.errors(include_input=False, include_url=False):
            loc = _without_union_tags(tuple(err["loc"]), data, keep_last=err["type"] == "missing")
            bad.append(loc)
            if err["type"] == "extra_forbidden":
                f, line, col = loaded.locate((*loc, "<key>"))
                message = "unknown key (misspelt?)"
            else:
                f, line, col = loaded.locate(loc)
                message = " ".join(str(err["msg"]).removeprefix("Value error, ").split())
                if err["type"] == "missing":
                    message = "required field is missing"
            issues.append(ConfigIssue(f, line, col, _dotted(loc), message))
    issues.extend(_cross_check(data, loaded))
    if issues:
        raise ConfigError(issues, partial=_salvage(data, bad, loaded) if salvageable else None)
    _collect_secrets(loaded.config, loaded.secrets)
    return loaded
