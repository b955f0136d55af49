"""Collects the code blocks of README.md and docs/**/*.md and runs them (``test_docs.py``).

Every fenced block in a shell language (bash, sh, shell, console, zsh) or in Python runs, unless the line
before it (blank lines allowed) is a directive, an HTML comment that renders as nothing:

- ``<!-- docs-test: skip (why) -->``: not run; the reason is required. Keep these few (real credentials).
- ``<!-- docs-test: synopsis -->``: a usage summary (``...``, ``[--opt X]``, placeholders). Not run, but
  every ``lead2cash`` command in it must exist with every ``--option`` it names, every ``make`` target
  must be in the Makefile, and every path under config/, docs/, tests/, bench/ or lead2cash/ must exist.
- ``<!-- docs-test: background until PATH -->``: started in the background before any block runs (the
  sandboxes), and stopped at the end; PATH (relative to the working directory) must appear within 90 s.
- ``<!-- docs-test: same-as PATH -->`` (Python): the block must be a verbatim part of the file at PATH.
- ``<!-- docs-test: check [with FILE ...] -->`` (YAML): the block is a config; ``lead2cash check [FILE
  ...] BLOCK`` must say ok. Each ``${VAR}`` in the block is set to a dummy value. An unmarked YAML block
  must at least parse.

A shell block runs as one bash script (``set -euo pipefail``). Full-line comments directly under a
command (no blank line between) are the output it promises: each must appear, whitespace aside, in what
that command printed. Other comments (first in the block, or after a blank line) are explanations.

All blocks run in order (README.md first, then docs/ by name) in one temporary working directory that
links ``config``, ``docs`` and ``.venv`` to the project's, with the project's ``lead2cash`` first on the
PATH. The sandboxes' documented ports (8441-8443, the hub's 8440) are replaced by free ones in the text
of every block and through ``LEAD2CASH_SANDBOX_*_PORT``.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parents[2]
SHELL = {"bash", "sh", "shell", "console", "zsh"}
PYTHON = {"python", "py", "python3"}
YAML = {"yaml", "yml"}
DIRECTIVE = re.compile(r"<!--\s*docs-test:\s*(?P<body>.*?)\s*-->", re.S)
KINDS = ("skip", "synopsis", "background", "same-as", "check")
REPO_DIRS = ("config/", "docs/", "tests/", "bench/", "lead2cash/")
DOC_PORTS = {"salesforce": 8441, "lago": 8442, "sap": 8443, "hub": 8440}
BLOCK_TIMEOUT = 240.0
HINT = (
    "\n(a block that cannot run here is marked just above it, e.g. <!-- docs-test: synopsis --> or "
    "<!-- docs-test: skip (why) -->: see tests/docs/docs_blocks.py)"
)


class DocsError(AssertionError):
    pass


@dataclass
class Block:
    file: str  # relative to ROOT
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    directive: str = ""  # the directive's body, "" when none

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def kind(self) -> str:
        return self.directive.split(maxsplit=1)[0] if self.directive else "run"

    @property
    def argument(self) -> str:
        parts = self.directive.split(maxsplit=1)
        return parts[1] if len(parts) > 1 else ""


def doc_files(root: Path = ROOT) -> list[Path]:
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def collect(path: Path, root: Path = ROOT) -> tuple[list[Block], list[str]]:
    """The file's fenced blocks with their directives, and the problems with the directives."""
    rel = str(path.relative_to(root)) if path.is_relative_to(root) else str(path)
    tokens = MarkdownIt("commonmark").parse(path.read_text(encoding="utf-8"))
    blocks: list[Block] = []
    problems: list[str] = []
    pending: tuple[str, int] | None = None
    for tok in tokens:
        line = (tok.map[0] + 1) if tok.map else 0
        if tok.type == "html_block" and (m := DIRECTIVE.search(tok.content)):
            if pending:
                problems.append(f"{rel}:{pending[1]}: docs-test directive not followed by a code block")
            pending = (" ".join(m.group("body").split()), line)
            continue
        if tok.type == "fence":
            lang = tok.info.split()[0].lower() if tok.info.strip() else ""
            block = Block(rel, line, lang, tok.content, pending[0] if pending else "")
            pending = None
            problem = _directive_problem(block)
            if problem:
                problems.append(f"{block.where}: {problem}")
            blocks.append(block)
            continue
        if pending and tok.nesting >= 0 and tok.type not in ("list_item_open", "bullet_list_open"):
            problems.append(f"{rel}:{pending[1]}: docs-test directive not followed by a code block")
            pending = None
    if pending:
        problems.append(f"{rel}:{pending[1]}: docs-test directive not followed by a code block")
    return blocks, problems


def _directive_problem(block: Block) -> str | None:
    if not block.directive:
        return None
    kind, arg = block.kind, block.argument
    if kind not in KINDS:
        return f"unknown docs-test directive {block.directive!r} (known: {', '.join(KINDS)})"
    if kind == "skip" and not re.fullmatch(r"\(.*\S.*\)", arg):
        return "docs-test: skip needs a reason in parentheses, e.g. skip (needs real Salesforce credentials)"
    if kind == "background" and not re.fullmatch(r"until \S+", arg):
        return "docs-test: background needs `until PATH` (a file the command writes once it is up)"
    if kind == "same-as" and not (ROOT / arg).is_file():
        return f"docs-test: same-as names {arg!r}, which is not a file of the project"
    if kind == "check" and block.lang not in YAML:
        return "docs-test: check is for YAML blocks"
    if kind in ("background", "synopsis") and block.lang not in SHELL:
        return f"docs-test: {kind} is for shell blocks"
    return None


# ---------------------------------------------------------------------------------------------- shell
@dataclass
class Step:
    command: str
    line: int  # in the markdown file
    expected: list[str] = field(default_factory=list)


def shell_steps(block: Block) -> list[Step]:
    steps: list[Step] = []
    lines = block.code.splitlines()
    i = 0
    last: Step | None = None  # the command a comment right under it belongs to
    while i < len(lines):
        text = lines[i].strip()
        line = block.line + 1 + i
        if not text:
            last = None
            i += 1
            continue
        if text.startswith("#"):
            if last is not None:
                last.expected.append(text[1:].strip())
            i += 1
            continue
        command = lines[i].rstrip()
        while command.endswith("\\") and i + 1 < len(lines):
            i += 1
            command = command[:-1] + " " + lines[i].strip()
        last = Step(command.strip(), line)
        steps.append(last)
        i += 1
    return steps


def _squash(text: str) -> str:
    return " ".join(text.split())


# Shell variables one block sets are there in the page's next blocks, as in one terminal.
_SAVE_VARIABLES = """
for _v in $(compgen -v); do
  case $_v in BASH*|FUNCNAME|PIPESTATUS|GROUPS|DIRSTACK|_|_v|SHLVL|PWD|OLDPWD|RANDOM|LINENO|SECONDS|EPOCH*|\
    SRANDOM|HISTCMD|PPID|UID|EUID|SHELLOPTS|IFS|PS4|OPTIND|OPTERR|OPTARG|COMP*|HOSTNAME|HOSTTYPE|MACHTYPE|\
    OSTYPE|PS1|PS2) ;;
  *) declare -p "$_v" ;;
  esac
done > "$DOCS_TEST_SESSION"
"""


def _run(argv: list[str], workdir: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """A block's process, its output and errors in one text, bounded by BLOCK_TIMEOUT."""
    return subprocess.run(
        argv,
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )


def run_shell(
    block: Block, workdir: Path, env: dict[str, str], ports: dict[str, int], session: Path | None = None
) -> None:
    """Runs the block as one bash script; ``session`` keeps the variables it sets for the next block."""
    steps = shell_steps(block)
    script = ["set -euo pipefail"]
    if session is not None:
        env = {**env, "DOCS_TEST_SESSION": str(session)}
        if session.exists():
            script.append('source "$DOCS_TEST_SESSION" 2>/dev/null || true')
    for n, step in enumerate(steps):
        script += [f"echo '@@docs-test step {n}@@'", with_ports(step.command, ports)]
    if session is not None:
        script.append(_SAVE_VARIABLES)
    proc = _run(["bash", "-c", "\n".join(script)], workdir, env)
    outputs: dict[int, str] = {}
    current = -1
    for out_line in proc.stdout.splitlines():
        if m := re.fullmatch(r"@@docs-test step (\d+)@@", out_line):
            current = int(m.group(1))
            outputs[current] = ""
        elif current >= 0:
            outputs[current] += out_line + "\n"
    if proc.returncode != 0:
        step = steps[current] if current >= 0 else steps[0]
        raise DocsError(
            f"{block.file}:{step.line}: `{step.command}` failed (exit {proc.returncode}):\n"
            + outputs.get(current, proc.stdout)[-3000:]
            + HINT
        )
    for n, step in enumerate(steps):
        printed = _squash(outputs.get(n, ""))
        for expected in step.expected:
            if _squash(expected) not in printed:
                raise DocsError(
                    f"{block.file}:{step.line}: `{step.command}` should print {expected!r}; it printed:\n"
                    + outputs.get(n, "")[-3000:]
                )


def with_ports(text: str, ports: dict[str, int]) -> str:
    for name, documented in DOC_PORTS.items():
        text = re.sub(
            rf"(?<=127\.0\.0\.1:){documented}\b|(?<=localhost:){documented}\b", str(ports[name]), text
        )
    return text


# ---------------------------------------------------------------------------------------------- background
def start_background(
    block: Block, workdir: Path, env: dict[str, str], ports: dict[str, int]
) -> subprocess.Popen[bytes]:
    until = workdir / block.argument.split(maxsplit=1)[1]
    log = (workdir / f"background-{Path(block.file).stem}-{block.line}.log").open("wb")
    proc = subprocess.Popen(
        ["bash", "-c", "set -euo pipefail\n" + with_ports(block.code, ports)],
        cwd=workdir,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if until.exists():
            return proc
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    stop_background(proc)
    raise DocsError(
        f"{block.where}: the background command did not write {until.name} (exit {proc.returncode}):\n"
        + Path(log.name).read_text(errors="replace")[-3000:]
    )


def stop_background(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


# ---------------------------------------------------------------------------------------------- python
def run_python(block: Block, workdir: Path, env: dict[str, str], ports: dict[str, int]) -> None:
    if block.kind == "same-as":
        source = (ROOT / block.argument).read_text(encoding="utf-8")
        if block.code.strip() not in source:
            raise DocsError(f"{block.where}: the block is not a verbatim part of {block.argument}")
    script = workdir / f"block_{Path(block.file).stem}_{block.line}.py"
    script.write_text(with_ports(block.code, ports), encoding="utf-8")
    proc = _run([sys.executable, str(script)], workdir, env)
    if proc.returncode != 0:
        raise DocsError(
            f"{block.where}: the Python block failed (exit {proc.returncode}):\n{proc.stdout[-3000:]}{HINT}"
        )


# ---------------------------------------------------------------------------------------------- yaml
def check_yaml(block: Block, workdir: Path, env: dict[str, str]) -> None:
    from ruamel.yaml import YAML, YAMLError

    try:
        YAML(typ="safe", pure=True).load(block.code)
    except YAMLError as exc:
        raise DocsError(f"{block.where}: the YAML block does not parse: {exc}") from exc
    if block.kind != "check":
        return
    others = block.argument.split()[1:] if block.argument.startswith("with ") else []
    path = workdir / f"block_{Path(block.file).stem}_{block.line}.yaml"
    path.write_text(block.code, encoding="utf-8")
    dummies = {name: "docs-test-dummy" for name in re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", block.code)}
    proc = subprocess.run(
        [sys.executable, "-m", "lead2cash.cli", "check", *others, str(path)],
        cwd=workdir,
        env={**env, **dummies},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=BLOCK_TIMEOUT,
        check=False,
    )
    if proc.returncode != 0:
        raise DocsError(f"{block.where}: `lead2cash check` refuses the config:\n{proc.stdout[-3000:]}")


# ---------------------------------------------------------------------------------------------- synopsis
def check_synopsis(block: Block) -> None:
    import typer.main

    from lead2cash.cli import app

    root_command = typer.main.get_command(app)
    makefile = (ROOT / "Makefile").read_text()
    problems: list[str] = []
    for step in shell_steps(block):
        command = re.sub(r"\s#.*$", "", step.command)
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        words = [w.strip("[]|") for w in words]
        for word in words:
            path = word.split("=", 1)[-1]
            if path.startswith(REPO_DIRS) and "<" not in path and not (ROOT / path).exists():
                problems.append(f"{block.file}:{step.line}: no such path {path}")
        if not words:
            continue
        if words[0] == "make":
            for target in words[1:]:
                if "=" not in target and not re.search(rf"^{re.escape(target)}:", makefile, re.M):
                    problems.append(f"{block.file}:{step.line}: no make target {target!r}")
        if words[0].rsplit("/", 1)[-1] != "lead2cash":
            continue
        cmd: Any = root_command
        rest = words[1:]
        # typer's groups are click groups, though not always of the click installed beside it
        while hasattr(cmd, "list_commands") and rest and not rest[0].startswith("-"):
            sub = cmd.get_command(None, rest[0])
            if sub is None:
                problems.append(f"{block.file}:{step.line}: no command `lead2cash ... {rest[0]}`")
                break
            cmd, rest = sub, rest[1:]
        else:
            options = {o for p in cmd.params for o in (*p.opts, *p.secondary_opts)}
            for word in rest:
                name = word.split("=", 1)[0]
                if name.startswith("-") and name not in ("-", "--") and name not in options:
                    problems.append(f"{block.file}:{step.line}: `{cmd.name}` has no option {name}")
    if problems:
        raise DocsError("\n".join(problems))
