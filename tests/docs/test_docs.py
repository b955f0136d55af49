"""Docs that run: every shell and Python block of README.md and docs/ runs here, against the sandboxes
started the way the README says (its ``lead2cash sandbox --write-systems`` block, in the background), and
the outputs the blocks promise are asserted. The rules for blocks and directives: ``docs_blocks.py``.

The README's first steps are the newcomer's path past the demo: sandboxes, systems file, ``check``, close
deals, ``run --until-idle``, billed and posted, a dead letter made on purpose and replayed, and no other.
"""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from docs_blocks import (
    DOC_PORTS,
    PYTHON,
    ROOT,
    SHELL,
    YAML,
    Block,
    DocsError,
    check_synopsis,
    check_yaml,
    collect,
    doc_files,
    run_python,
    run_shell,
    start_background,
    stop_background,
)

FILES = doc_files()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Docs:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ports = {name: _free_port() for name in DOC_PORTS}
        venv = Path(sys.prefix)
        for name, target in (("config", ROOT / "config"), ("docs", ROOT / "docs"), (".venv", venv)):
            (workdir / name).symlink_to(target)
        self.env = {
            **os.environ,
            "PATH": f"{venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
            "COLUMNS": "220",
            "NO_COLOR": "1",
            "TERM": "dumb",
            **{f"LEAD2CASH_SANDBOX_{name.upper()}_PORT": str(port) for name, port in self.ports.items()},
        }

    def run(self, block: Block) -> None:
        if block.kind in ("skip", "background"):
            return
        if block.lang in SHELL:
            if block.kind == "synopsis":
                check_synopsis(block)
            else:
                session = self.workdir / f".session-{block.file.replace('/', '-')}.sh"
                run_shell(block, self.workdir, self.env, self.ports, session)
        elif block.lang in PYTHON:
            run_python(block, self.workdir, self.env, self.ports)
        elif block.lang in YAML:
            check_yaml(block, self.workdir, self.env)


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docs]:
    """One working directory for all the docs, with their background blocks (the sandboxes) running."""
    docs = Docs(tmp_path_factory.mktemp("docs"))
    started = []
    try:
        for path in FILES:
            for block in collect(path)[0]:
                if block.kind == "background":
                    started.append(start_background(block, docs.workdir, docs.env, docs.ports))
        yield docs
    finally:
        for proc in reversed(started):
            stop_background(proc)


def test_every_directive_is_known_and_sits_on_a_block() -> None:
    problems = [p for path in FILES for p in collect(path)[1]]
    assert not problems, "\n".join(problems)


# Pages whose blocks take tens of seconds (the README's first sync, the tutorial's billing run): slow lane.
SLOW_PAGES = {"README.md", "docs/tutorial-credit-notes.md"}


def _page(path: Path) -> object:
    name = str(path.relative_to(ROOT))
    return pytest.param(path, id=name, marks=[pytest.mark.slow] if name in SLOW_PAGES else [])


@pytest.mark.parametrize("path", [_page(p) for p in FILES])
def test_the_blocks_run(path: Path, docs: Docs) -> None:
    blocks, problems = collect(path)
    assert not problems, "\n".join(problems)
    for block in blocks:
        docs.run(block)


# ---------------------------------------------------------------------------------------------- the collector
def _markdown(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "page.md"
    path.write_text(text)
    return path


def test_a_failing_command_names_the_file_and_line(tmp_path: Path) -> None:
    page = _markdown(tmp_path, "# t\n\n```bash\necho one\nfalse\n```\n")
    (block,), _ = collect(page, tmp_path)
    with pytest.raises(DocsError, match=r"page\.md:5: `false` failed"):
        run_shell(block, tmp_path, dict(os.environ), dict.fromkeys(DOC_PORTS, 1))


def test_a_promised_output_is_asserted(tmp_path: Path) -> None:
    page = _markdown(tmp_path, "```bash\n# an explanation\necho 'ok: 4 system(s)'\n# ok: 5 system(s)\n```\n")
    (block,), _ = collect(page, tmp_path)
    with pytest.raises(DocsError, match=r"page\.md:3: .* should print 'ok: 5 system\(s\)'"):
        run_shell(block, tmp_path, dict(os.environ), dict.fromkeys(DOC_PORTS, 1))


def test_directives_must_be_known_have_reasons_and_sit_on_a_block(tmp_path: Path) -> None:
    page = _markdown(
        tmp_path,
        "<!-- docs-test: skipp (typo) -->\n```bash\nx\n```\n\n"
        "<!-- docs-test: skip -->\n```bash\nx\n```\n\n"
        "<!-- docs-test: synopsis -->\n\nsome text\n\n```bash\nx\n```\n",
    )
    _, problems = collect(page, tmp_path)
    assert problems == [
        "page.md:2: unknown docs-test directive 'skipp (typo)' (known: skip, synopsis, background, same-as, check)",
        "page.md:7: docs-test: skip needs a reason in parentheses, e.g. skip (needs real Salesforce credentials)",
        "page.md:11: docs-test directive not followed by a code block",
    ]


def test_a_synopsis_is_checked_against_the_cli(tmp_path: Path) -> None:
    page = _markdown(
        tmp_path,
        "<!-- docs-test: synopsis -->\n```bash\nlead2cash dlq list -c ... [--route NAME] [--colour]\n"
        "lead2cash dlq lsit -c ...\nmake demoo\n.venv/bin/python -m pytest tests/nowhere\n```\n",
    )
    (block,), _ = collect(page, tmp_path)
    with pytest.raises(DocsError) as failed:
        check_synopsis(block)
    assert str(failed.value).splitlines() == [
        "page.md:3: `list` has no option --colour",
        "page.md:4: no command `lead2cash ... lsit`",
        "page.md:5: no make target 'demoo'",
        "page.md:6: no such path tests/nowhere",
    ]


# ---------------------------------------------------------------------------------------------- the demo's hint
def test_the_demos_hint_names_a_lead2cash_the_shell_can_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After ``make demo`` the venv is not active: the hint must say ``.venv/bin/lead2cash``."""
    from lead2cash.demo.lead_to_cash import lead2cash_command

    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    (bin_dir / "lead2cash").write_text("#!/bin/sh\n")
    (bin_dir / "lead2cash").chmod(0o755)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [".venv/bin/lead2cash", "demo"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert lead2cash_command() == ".venv/bin/lead2cash"
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")  # . .venv/bin/activate
    assert lead2cash_command() == "lead2cash"
    monkeypatch.setattr(sys, "argv", ["/somewhere/lead2cash/cli.py", "demo"])
    assert lead2cash_command() == f"{sys.executable} -m lead2cash.cli"
