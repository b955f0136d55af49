"""Broken configs: each error names the file, line, column and field, and all are reported together."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lead2cash.cli import app
from lead2cash.config import ConfigError, load_config

VALID = """\
systems:
  files:
    type: file
    directory: data
mappings:
  stage_to_status: {"Closed Won": won, _default: open}
routes:
  - name: orders
    source: {system: files, object: inbox}
    mapping: {adapter: canonical, entity: Order, value_maps: {status: stage_to_status}}
    target: {system: files, action: append, options: {object: outbox}}
    idempotency_key: "order:{id}:v{version}"
"""

CASES = {
    "yaml syntax": ("systems:\n  files: {type: file\n", 3, "", "YAML syntax error"),
    "unknown key": (
        VALID.replace("    directory: data", "    directory: data\n    direktory: x"),
        5,
        "systems.files.direktory",
        "unknown key",
    ),
    "wrong type": (
        VALID.replace("object: inbox}", "object: inbox}\n    batch_size: lots"),
        10,
        "routes[0].batch_size",
        "valid integer",
    ),
    "missing env": (
        VALID.replace("directory: data", "directory: ${NOT_SET_ANYWHERE}"),
        4,
        "systems.files.directory",
        "NOT_SET_ANYWHERE is not set",
    ),
    "bad jmespath": (
        VALID.replace("object: inbox}", 'object: inbox}\n    filter: "a =="'),
        10,
        "routes[0].filter",
        "invalid JMESPath",
    ),
    "unknown system": (
        VALID.replace("target: {system: files", "target: {system: lago"),
        11,
        "routes[0].target.system",
        "unknown system 'lago'",
    ),
    "duplicate route": (VALID + VALID.split("routes:\n", 1)[1], 13, "routes[1].name", "duplicate route name"),
    "undefined value map": (
        VALID.replace("status: stage_to_status", "status: nope"),
        10,
        "routes[0].mapping.value_maps.status",
        "'nope' is not defined",
    ),
    "bad duration": (
        VALID.replace("object: inbox}", "object: inbox, trigger: {type: poll, interval: soon}}"),
        9,
        "routes[0].source.trigger.interval",
        "duration",
    ),
    "bad cron": (
        VALID.replace("object: inbox}", "object: inbox, trigger: {type: schedule, cron: '61 * * * *'}}"),
        9,
        "routes[0].source.trigger.cron",
        "crontab",
    ),
    "constant key": (
        VALID.replace('"order:{id}:v{version}"', '"order"'),
        12,
        "routes[0].idempotency_key",
        "at least one",
    ),
    "missing field": (
        VALID.replace("    target: {system: files, action: append, options: {object: outbox}}\n", ""),
        8,
        "routes[0].target",
        "required",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_broken_config_names_file_line_and_field(tmp_path: Path, case: str) -> None:
    text, line, field, message = CASES[case]
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    matching = [i for i in info.value.issues if message in i.message]
    assert matching, f"no issue mentions {message!r}: {info.value}"
    issue = matching[0]
    assert issue.file == str(path)
    assert issue.line == line, str(issue)
    assert issue.column is not None
    assert issue.field == field


def test_all_errors_are_reported_not_only_the_first(tmp_path: Path) -> None:
    text = VALID.replace("direktory", "x").replace("directory: data", "directory: data\n    colour: red")
    text = text.replace("target: {system: files", "target: {system: ghost").replace(
        '"order:{id}:v{version}"', "7"
    )
    path = tmp_path / "many.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    fields = {i.field for i in info.value.issues}
    assert {"systems.files.colour", "routes[0].target.system", "routes[0].idempotency_key"} <= fields


def test_secrets_from_env_and_files_are_interpolated_and_remembered(tmp_path: Path) -> None:
    (tmp_path / "token.txt").write_text("s3cr3t-from-file\n")
    path = tmp_path / "c.yaml"
    path.write_text(
        "systems:\n  p:\n    type: python\n    factory: 'doubles:memory_system'\n"
        "    secrets: {token: '${file:token.txt}', api_key: '${API_KEY}'}\n"
        "web: {admin_token: '${ADMIN_TOKEN:-fallback-admin-token}'}\n"
    )
    loaded = load_config(path, environ={"API_KEY": "env-api-key-123"})
    secrets = loaded.config.systems["p"].secrets  # type: ignore[union-attr]
    assert secrets["token"].get_secret_value() == "s3cr3t-from-file"
    assert "s3cr3t-from-file" not in repr(loaded.config)
    assert {"s3cr3t-from-file", "env-api-key-123", "fallback-admin-token"} <= loaded.secrets


def test_several_files_merge_and_errors_point_at_the_right_file(tmp_path: Path) -> None:
    (tmp_path / "systems.yaml").write_text("systems:\n  files: {type: file, directory: data}\n")
    routes = VALID.split("routes:", 1)[1].replace("target: {system: files", "target: {system: nowhere")
    (tmp_path / "routes.yaml").write_text("mappings:\n  stage_to_status: {a: b}\nroutes:" + routes)
    with pytest.raises(ConfigError) as info:
        load_config([tmp_path / "systems.yaml", tmp_path / "routes.yaml"], environ={})
    [issue] = info.value.issues
    assert issue.file == str(tmp_path / "routes.yaml") and issue.line == 7


def test_check_command_prints_every_issue_and_fails(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(
        VALID.replace("directory: data", "directory: data\n    colour: red").replace(
            "system: files, object", "system: ghost, object"
        )
    )
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1
    assert f"{path}:5:" in result.output and "systems.files.colour" in result.output
    assert "routes[0].source.system" in result.output
    ok = tmp_path / "ok.yaml"
    ok.write_text(VALID)
    assert CliRunner().invoke(app, ["check", str(ok)]).exit_code == 0


def test_json_schema_for_editors() -> None:
    result = CliRunner().invoke(app, ["config", "schema"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    assert schema["title"] == "lead2cash hub configuration"
    assert "routes" in schema["properties"] and "RouteConfig" in schema["$defs"]


def test_check_lists_schema_and_build_problems_in_one_run(tmp_path: Path) -> None:
    """A schema error in one route does not hide what building the others finds: an unknown action, an
    unknown adapter and a key template naming a field the entity lacks, each at its own line."""
    broken = VALID.replace("- name: orders", "- name: first").replace(
        'idempotency_key: "order:{id}:v{version}"',
        'idempotency_key: "order:{id}:v{version}"\n    batch_size: lots',
    )
    second = (
        "  - name: second\n"
        "    source: {system: files, object: inbox2}\n"
        "    mapping: {adapter: canonicall, entity: Order}\n"
        "    target: {system: files, action: append, options: {object: outbox}}\n"
        '    idempotency_key: "order:{idd}"\n'
        "  - name: third\n"
        "    source: {system: files, object: inbox3}\n"
        "    mapping: {adapter: canonical, entity: Order}\n"
        "    target: {system: files, action: appendd, options: {object: outbox}}\n"
        '    idempotency_key: "order:{id}"\n'
    )
    path = tmp_path / "bad.yaml"
    path.write_text(broken + second)
    result = CliRunner().invoke(app, ["check", str(path)])
    assert result.exit_code == 1, result.output
    lines = [line.strip() for line in result.output.splitlines() if line.strip().startswith(str(path))]
    fields = [line.split(": ")[1] for line in lines]
    assert fields == [
        "routes[0].batch_size",
        "routes[1].mapping.adapter",
        "routes[1].idempotency_key",
        "routes[2].target.action",
    ], result.output
    # Each problem at its own line in the file (the partial config keeps the routes' original lines).
    text = path.read_text().splitlines()
    for line in lines:
        number = int(line.removeprefix(f"{path}:").split(":")[0])
        field = line.split(": ")[1]
        expected = {"batch_size": "batch_size", "adapter": "canonicall", "idempotency_key": "{idd}"}
        word = next((w for k, w in expected.items() if field.endswith(k)), "appendd")
        assert word in text[number - 1], (line, text[number - 1])
