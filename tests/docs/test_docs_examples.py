"""Every code example in README.md and docs/**/*.md runs.

A fenced block of ``python`` (or ``sh``, ``bash``, ``console``) is an
example.  Its first line may say how it runs, visibly, for readers too:

* ``# Continues the example above.`` (or any first line starting with
  ``# Continues``): it runs after the previous example of the same file, in
  the same directory and, for Python, the same namespace;
* ``# Not run by the tests: <reason>``, or an HTML comment right before the
  fence, ``<!-- not run by the tests: <reason> -->`` (invisible once
  rendered, for commands a reader copies): it is skipped, and the reason
  must be given;
* anything else: it runs on its own, in a fresh temporary directory.

An example and its continuations run in one child process (Python blocks
with ``exec``, shell blocks with ``bash -eu -o pipefail`` and the package's
command on ``PATH``), so an example that hangs or leaves threads behind
cannot affect the others; each chain has a time limit.  Tracebacks name the
Markdown file and its line.  ``python`` blocks of SQL, JSON or text are not
examples: other fence languages (``sql``, ``json``, ``text``) are not run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from _source import module_source_path

#: The checkout whose README.md and docs/ are read (SSS_SOURCE_DIR when the
#: tests run from elsewhere, e.g. against an installed wheel).
ROOT = module_source_path("README.md").parent
LANGUAGES = {"python": "python", "py": "python", "sh": "sh", "bash": "sh", "console": "sh"}
CONTINUES = re.compile(r"#\s*continues\b", re.IGNORECASE)
NOT_RUN = re.compile(r"#\s*not run by the tests\s*:?\s*(.*)", re.IGNORECASE)
NOT_RUN_COMMENT = re.compile(r"<!--\s*not run by the tests\s*:?\s*(.*?)\s*-->", re.IGNORECASE)
FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)[^`]*$")
#: Seconds one chain (an example and its continuations) may take.
TIMEOUT = 180


@dataclass
class Block:
    path: Path
    line: int  # of the first code line, 1-based
    language: str
    code: str
    skip_reason: str | None = None
    continues: bool = False

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


@dataclass
class Chain:
    blocks: list[Block] = field(default_factory=list)

    @property
    def id(self) -> str:
        return self.blocks[0].where


def extract(path: Path) -> list[Block]:
    """The fenced code blocks of one Markdown file that are examples."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence, info = m["indent"], m["fence"], m["info"].strip("{}").lower()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence)
                                      and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j])
            j += 1
        if info in LANGUAGES:
            code = textwrap.dedent("\n".join(
                line[len(indent):] if line.startswith(indent) else line for line in body))
            first = code.lstrip("\n").split("\n", 1)[0]
            block = Block(path, i + 2, LANGUAGES[info], code + "\n")
            if m2 := NOT_RUN.match(first) or NOT_RUN_COMMENT.match(_comment_before(lines, i)):
                block.skip_reason = m2.group(1).strip()
            block.continues = bool(CONTINUES.match(first))
            blocks.append(block)
        i = j + 1
    return blocks


def _comment_before(lines: list[str], fence: int) -> str:
    """The HTML comment that ends on the line right before ``fence``, as one
    line ('' if there is none)."""
    end = fence - 1
    if end < 0 or not lines[end].rstrip().endswith("-->"):
        return ""
    start = end
    while start > 0 and "<!--" not in lines[start]:
        start -= 1
    return " ".join(line.strip() for line in lines[start:end + 1])


def documents() -> list[Path]:
    docs = sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)
    return [ROOT / "README.md", *docs]


def chains() -> list[Chain]:
    out: list[Chain] = []
    for path in documents():
        current: Chain | None = None
        for block in extract(path):
            if block.skip_reason is not None:
                continue
            if block.continues:
                assert current is not None, f"{block.where}: continues, but no example runs before it"
                current.blocks.append(block)
            else:
                current = Chain([block])
                out.append(current)
    return out


def skipped() -> list[Block]:
    return [b for path in documents() for b in extract(path) if b.skip_reason is not None]


# The child: runs a chain's blocks in order; exits 1 naming the failing one.
RUNNER = r"""
import json, os, subprocess, sys, traceback
blocks = json.loads(sys.stdin.read())
namespace = {"__name__": "__main__"}
for b in blocks:
    print(f"--- {b['where']}", flush=True)
    try:
        if b["language"] == "python":
            code = compile("\n" * (b["line"] - 1) + b["code"], b["path"], "exec")
            exec(code, namespace)
        else:
            subprocess.run(["bash", "-eu", "-o", "pipefail", "-c", b["code"]], check=True,
                           timeout=b["timeout"])
    except BaseException as e:
        traceback.print_exc()
        print(f"FAILED: the example at {b['where']}: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
"""


@pytest.mark.parametrize("chain", chains(), ids=lambda c: c.id)
def test_example_runs(chain: Chain, tmp_path: Path) -> None:
    if sys.platform == "win32" and any(b.language == "sh" for b in chain.blocks):
        pytest.skip("a shell example: POSIX shell syntax (bash is not a given on Windows)")
    payload = [{"where": b.where, "path": str(b.path), "line": b.line, "language": b.language,
                "code": b.code, "timeout": TIMEOUT} for b in chain.blocks]
    env = dict(os.environ)
    # the package's command (sqlite-session-safe) next to this interpreter
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env.pop("PYTHONSTARTUP", None)
    try:
        out = subprocess.run([sys.executable, "-X", "faulthandler", "-c", RUNNER],
                             input=json.dumps(payload), capture_output=True, text=True,
                             cwd=tmp_path, env=env, timeout=TIMEOUT)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the example at {chain.id} did not finish within {TIMEOUT} s:\n"
                    f"{e.stdout}\n{e.stderr}")
    assert out.returncode == 0, f"{out.stdout[-3000:]}\n{out.stderr[-6000:]}"


def test_examples_not_run_say_why() -> None:
    for block in skipped():
        assert len(block.skip_reason or "") >= 10, f"{block.where}: give the reason it is not run"


def test_there_are_examples() -> None:
    """The extraction finds what is there (a broken fence pattern would
    silently run nothing)."""
    readme = extract(ROOT / "README.md")
    assert sum(b.language == "python" for b in readme) >= 8
    assert len(chains()) >= 20
