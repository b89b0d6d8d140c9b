"""The README's code runs: every ```python block, and every ```bash / ```console block of ``jaxrec`` commands.

Whatever ``README.md`` holds, the blocks are found and run here, so a snippet that drifts from the
API fails CI.  Conventions for README authors:

* ```python blocks run **in order, in one shared namespace**, like notebook cells, in a fresh
  temporary working directory: a block may use the names of earlier blocks.
* A block that needs names it should not show (a model, data) gets an **HTML comment right
  before it** (invisible on GitHub), whose first line is ``readme-test: setup`` and whose other
  lines are Python, run in the same namespace just before the block::

      <!-- readme-test: setup
      model, xs = ToyVAE(), jnp.zeros((3, 4))
      -->
      ```python
      files = jaxrec.compress_batch(model, xs, ...)
      ```

  The setup of a CLI block typically writes the files its commands read (``open("item.jrec",
  "wb").write(data)``).
* ``<!-- readme-test: skip -->`` right before a block leaves it out (say why in the comment).
* In a ```bash block whose first command starts with ``jaxrec``, and in a ```console block, every
  line ``jaxrec ...`` (bash) or ``$ jaxrec ...`` (console) runs the command line
  (:func:`jaxrec.cli.main`, shell-style words and globs, ``#`` comments dropped, ``\\``
  continuations joined) in the same working directory and must exit with status 0; other lines
  (output) are not compared.  Other bash blocks (installation, experiments) are not run.
"""

from __future__ import annotations

import contextlib
import glob
import io
import os
import re
import shlex
import warnings
from pathlib import Path
from typing import Any, NamedTuple

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
FENCE = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
COMMENT = re.compile(r"<!--((?:(?!<!--).)*?)-->\s*\Z", re.DOTALL)  # the HTML comment right before a block
SHELLS = ("bash", "sh", "shell", "console")


class Block(NamedTuple):
    """One fenced block: its language, first line number in the README, code and setup code."""

    lang: str
    line: int
    code: str
    setup: str
    skip: bool


def readme_blocks(text: str) -> list[Block]:
    """The fenced blocks of ``text`` with their preceding ``readme-test`` comments."""
    blocks = []
    for match in FENCE.finditer(text):
        lang, code = match.group(1).lower(), match.group(2)
        line = text.count("\n", 0, match.start(2)) + 1
        comment = COMMENT.search(text, 0, match.start())
        setup, skip = "", False
        if comment:
            body = comment.group(1).strip()
            head, _, rest = body.partition("\n")
            if head.strip().startswith("readme-test: skip"):
                skip = True
            elif head.strip() == "readme-test: setup":
                setup = rest
        blocks.append(Block(lang, line, code, setup, skip))
    return blocks


def cli_commands(block: Block) -> list[str]:
    """The ``jaxrec`` command lines of a shell block (empty for blocks that are not CLI examples)."""
    lines, pending = [], ""
    for raw in block.code.splitlines():
        if pending:
            raw = pending + " " + raw.strip()
            pending = ""
        if raw.rstrip().endswith("\\"):
            pending = raw.rstrip()[:-1].rstrip()
            continue
        lines.append(raw.strip())
    if block.lang == "console":
        return [line[2:] for line in lines if line.startswith("$ jaxrec ")]
    commands = [line for line in lines if line and not line.startswith("#")]
    if not commands or not commands[0].startswith("jaxrec "):
        return []
    return [line for line in commands if line.startswith("jaxrec ")]


BLOCKS = [b for b in readme_blocks(README.read_text()) if b.lang == "python" or (b.lang in SHELLS and cli_commands(b))]


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The shared namespace of the README's blocks and their working directory."""
    return {"namespace": {"__name__": "readme"}, "cwd": tmp_path_factory.mktemp("readme")}


@contextlib.contextmanager
def working_directory(path: Path):
    previous = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _run_python(code: str, line: int, namespace: dict[str, Any]) -> None:
    # padded so that a traceback names the README's own line numbers
    exec(compile("\n" * (line - 1) + code, str(README), "exec"), namespace)  # noqa: S102 (running the README is the point)


def _run_cli(command: str) -> None:
    from jaxrec import cli

    words = shlex.split(command, comments=True)
    assert words[0] == "jaxrec", command
    argv = [match for word in words[1:] for match in (sorted(glob.glob(word)) if glob.has_magic(word) else [word])]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = cli.main(argv)
        except SystemExit as exit_:  # argparse exits on bad usage
            status = exit_.code
    assert status in (0, None), f"README command {command!r} exited with {status}: {err.getvalue()}"


def test_readme_has_python_blocks():
    assert any(b.lang == "python" for b in BLOCKS), "README.md has no ```python block"


@pytest.mark.slow  # the README's examples encode, compress and run the CLI: about a minute on 2 cores
@pytest.mark.parametrize("block", BLOCKS, ids=[f"{b.lang}-line{b.line}" for b in BLOCKS])
def test_readme_block_runs(block: Block, session: dict[str, Any]):
    if block.skip:
        pytest.skip("marked <!-- readme-test: skip --> in the README")
    namespace = session["namespace"]
    with working_directory(session["cwd"]), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # e.g. a README example of an exhausted search
        if block.setup:
            _run_python(block.setup, block.line, namespace)
        if block.lang == "python":
            _run_python(block.code, block.line, namespace)
        else:
            for command in cli_commands(block):
                _run_cli(command)


def test_block_extraction_follows_the_conventions():
    """The parser itself, on a small README: setup and skip comments, CLI lines, other blocks."""
    text = (
        "intro\n<!-- readme-test: setup\nx = 1\n-->\n```python\ny = x + 1\n```\n"
        "<!-- readme-test: skip (illustration) -->\n```python\nundefined\n```\n"
        "```bash\npip install jaxrec\n```\n"
        "```bash\njaxrec info a.jrec \\\n  --json   # comment\n```\n"
        "```console\n$ jaxrec info a.jrec\nfile: a.jrec\n```\n"
    )
    blocks = readme_blocks(text)
    assert [b.lang for b in blocks] == ["python", "python", "bash", "bash", "console"]
    assert blocks[0].setup.strip() == "x = 1" and not blocks[0].skip and blocks[0].line == 6
    assert blocks[1].skip
    assert cli_commands(blocks[2]) == []
    assert cli_commands(blocks[3]) == ["jaxrec info a.jrec --json   # comment"]
    assert cli_commands(blocks[4]) == ["jaxrec info a.jrec"]
