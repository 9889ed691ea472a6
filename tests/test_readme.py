"""Every shell and Python block of README.md runs here, as a reader would run it, only smaller.

**The one substitution** (:func:`shrink`), applied to every block before it runs, so that the
whole file runs in a minute or two:

- ``max_epochs=N`` and ``--max-epochs N`` become ``1``; ``k=N`` and ``--k N`` become ``2``;
- an ``intro-dgm train`` line that names no ``--spec`` gets ``--max-epochs 1`` and ``--k 2``
  where it names neither;
- ``ROW_ID`` becomes the id of the ``ok`` row of the store named on that line that trained
  fastest (its smallest ``train_seconds``).

Nothing else changes: the numbers a block prints are those of barely trained models, and a
block passes when it runs without an error (exit status 0). One exception: ``intro-dgm
reproduce`` exits 1 when the new run does not reproduce the stored row, which is its answer,
not an error; it passes with 0 or 1 and its report. (Rows written before this round's
evaluation change do not reproduce until the stores are re-run.)

**How the blocks run.** In README order, in one temporary folder (a block may use what an
earlier one wrote), which holds a link ``.venv`` to this interpreter's environment. A Python
block runs in a fresh ``python`` of that environment. A shell block runs line by line
(``\\``-continued lines joined, comments dropped): a line that calls ``intro-dgm`` (or
``.venv/bin/intro-dgm``) and nothing else runs, in this process, the function that the
installed console script ``intro-dgm`` calls (its entry point), which saves importing torch
once per line; any other line runs in ``bash``.

**Blocks that cannot run here** (they need the network, a browser, a clone, ``make`` or
``git``) carry the marker ``<!-- not run by the README test: REASON -->`` on the line before
the block. They are reported as skipped, with their reason (``pytest -rs`` lists them), and a
block that has a line this test cannot run (:data:`CANNOT_RUN`) but no marker fails, as does a
marked block that has no such line. Every block names its language.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
SHELL, PYTHON, TEXT = {"bash", "sh", "shell"}, {"python", "py"}, {"text", "yaml", "toml", "json"}
MARKER = re.compile(r"^<!-- not run by the README test: (.+?) -->$")
#: Lines this test cannot run: shell lines that install, clone, build the book, open a
#: browser, tag or push; notebook magics in Python blocks.
CANNOT_RUN = {"shell": re.compile(r"^\s*(\S*/)?(make|git|conda|sudo|apt-get|jupyter|source)\b"
                                  r"|^\s*(\S*/)?(pip|python -m pip)\s+install\b"),
              "python": re.compile(r"^\s*[%!]")}
INTRO_DGM = re.compile(r"^(\S*/)?intro-dgm$")
SHELL_OPERATORS = re.compile(r"[|;&<>`$]")


@dataclass
class Block:
    index: int      # 1, 2, ... in README order
    section: str    # the "## " heading above it
    language: str
    code: str
    line: int       # of the opening fence, from 1
    marker: str | None  # the reason it is not run, if marked

    @property
    def id(self) -> str:
        section = re.sub(r"[^a-z0-9]+", "-", self.section.lower()).strip("-")
        return f"{self.index:02d}-{section}-{self.language}"


def readme_blocks(text: str | None = None) -> list[Block]:
    """The fenced blocks of the README, with their section and marker."""
    lines = (README.read_text() if text is None else text).splitlines()
    blocks, section, i = [], "", 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            section = line[3:].strip()
        fence = re.match(r"^```\s*(\S*)\s*$", line)
        if fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            marker = MARKER.match(before.strip())
            blocks.append(Block(len(blocks) + 1, section, fence.group(1).lower(),
                                "\n".join(lines[i + 1:end]), i + 1,
                                marker.group(1) if marker else None))
            i = end
        i += 1
    return blocks


def shell_lines(code: str) -> list[str]:
    """The commands of a shell block: continuations joined, blank and comment lines dropped."""
    joined = re.sub(r"\\\n\s*", " ", code)
    return [line.strip() for line in joined.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def fastest_row(store: str) -> str:
    """The id of the ``ok`` row of a results store that trained fastest."""
    from intro_dgm.protocol import store_path

    path = Path(store) if Path(store).suffix else store_path(store)
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    ok = [r for r in rows if r["status"] == "ok" and "train_seconds" in r["metrics"]]
    return min(ok, key=lambda r: r["metrics"]["train_seconds"])["id"]


def shrink(code: str) -> str:
    """The documented substitution (see the module's docstring)."""
    code = re.sub(r"\b(max_epochs\s*=\s*)\d+", r"\g<1>1", code)
    code = re.sub(r"(--max-epochs\s+)\d+", r"\g<1>1", code)
    code = re.sub(r"(?<![\w.])(k\s*=\s*)\d+", r"\g<1>2", code)
    code = re.sub(r"(--k\s+)\d+", r"\g<1>2", code)
    out = []
    for line in code.split("\n"):
        words = line.split()
        if len(words) > 1 and INTRO_DGM.match(words[0]) and words[1] == "train" \
                and "--spec" not in words:
            comment = re.search(r"\s+#.*$", line)
            body, tail = (line[:comment.start()], line[comment.start():]) if comment else (line, "")
            body += "" if "--max-epochs" in words else " --max-epochs 1"
            body += "" if "--k" in words else " --k 2"
            line = body + tail
        if "ROW_ID" in line:
            store = words[words.index("ROW_ID") - 1]
            line = line.replace("ROW_ID", fastest_row(store))
        out.append(line)
    return "\n".join(out)


BLOCKS = readme_blocks()
RUNNABLE = [b for b in BLOCKS if b.language in SHELL | PYTHON]


# ------------------------------------------------------------------------- the markers
def test_every_block_names_its_language():
    unnamed = [b.line for b in BLOCKS if b.language not in SHELL | PYTHON | TEXT]
    assert not unnamed, (f"README.md: the blocks at lines {unnamed} name no language this test "
                         f"knows ({', '.join(sorted(SHELL | PYTHON | TEXT))})")


def marking_problems(blocks: list[Block]) -> list[str]:
    """A runnable block with a line this test cannot run but no marker, or a marked block
    whose every line this test could run."""
    problems = []
    for b in blocks:
        if b.language not in SHELL | PYTHON:
            continue
        kind = "shell" if b.language in SHELL else "python"
        lines = shell_lines(b.code) if kind == "shell" else b.code.splitlines()
        cannot = [line for line in lines if CANNOT_RUN[kind].search(line)]
        if b.marker is None and cannot:
            problems.append(f"README.md line {b.line}: this test cannot run {cannot[0]!r}; put "
                            f"'<!-- not run by the README test: REASON -->' before the block")
        if b.marker is not None and not cannot:
            problems.append(f"README.md line {b.line} is marked '{b.marker}', but this test can "
                            f"run every line of it: remove the marker")
    return problems


def test_a_block_is_marked_exactly_when_it_cannot_run_here():
    assert not marking_problems(BLOCKS), "\n".join(marking_problems(BLOCKS))


def test_the_marking_check_catches_both_mistakes():
    text = ("## A\n\n```bash\nmake book\n```\n\n<!-- not run by the README test: slow -->\n"
            "```bash\nintro-dgm --help\n```\n\n<!-- not run by the README test: a magic -->\n"
            "```python\n%pip install x\n```\n")
    problems = marking_problems(readme_blocks(text))
    assert len(problems) == 2
    assert "line 3: this test cannot run 'make book'" in problems[0]
    assert "line 8 is marked 'slow'" in problems[1]


def test_the_marked_blocks_are_the_known_ones():
    """The blocks that do not run here: named, so that a new one is a decision, not a slip."""
    marked = [re.sub(r"\s+#.*", "", b.code.strip().splitlines()[0]) for b in RUNNABLE if b.marker]
    assert marked == [
        'pip install "intro_dgm @ git+https://github.com/intro-dgm/intro_dgm"',  # the network
        "git clone https://github.com/intro-dgm/intro_dgm && cd intro_dgm",      # ... and a browser
        "make book",                                                             # and make test
        "git tag v0.1.0 && git push origin v0.1.0",                              # maintainers
    ], marked


def test_the_substitution_does_what_the_docstring_says():
    code = ("fit(m, a, b, TrainConfig(max_epochs=500))\nnll = f(model, x, k=1000)\n"
            "intro-dgm evaluate runs/vae --k 5000\n.venv/bin/intro-dgm train --model vae --out d  # c\n"
            "intro-dgm train --spec s.json --out d\nintro-dgm train --max-epochs 9 --out d")
    assert shrink(code).splitlines() == [
        "fit(m, a, b, TrainConfig(max_epochs=1))", "nll = f(model, x, k=2)",
        "intro-dgm evaluate runs/vae --k 2",
        ".venv/bin/intro-dgm train --model vae --out d --max-epochs 1 --k 2  # c",
        "intro-dgm train --spec s.json --out d", "intro-dgm train --max-epochs 1 --out d --k 2"]
    row = shrink("intro-dgm reproduce priors ROW_ID --out runs/check").split()[3]
    assert re.fullmatch(r"[0-9a-f]{12}", row)


# ------------------------------------------------------------------------ the blocks run
@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("readme")
    (folder / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    return folder


def _env() -> dict:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    return env


def _run_cli(argv: list[str], folder: Path) -> tuple[int, str]:
    """``intro-dgm ARGV`` in this process: the function the installed console script calls."""
    from importlib.metadata import entry_points

    (script,) = entry_points(group="console_scripts", name="intro-dgm")
    main = script.load()
    out = io.StringIO()
    cwd = Path.cwd()
    os.chdir(folder)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                status = main(argv)
            except SystemExit as exc:  # --help
                status = exc.code or 0
    finally:
        os.chdir(cwd)
    return status, out.getvalue()


def _run_shell(code: str, folder: Path) -> None:
    for line in shell_lines(code):
        words = shlex.split(line, comments=True)
        if words and INTRO_DGM.match(words[0]) and not SHELL_OPERATORS.search(line.split("#")[0]):
            status, output = _run_cli(words[1:], folder)
            if words[1:2] == ["reproduce"] and status == 1 and "reproduced" in output:
                status = 0  # "NOT reproduced" is reproduce's answer (module docstring)
        else:
            done = subprocess.run(["bash", "-c", line], cwd=folder, env=_env(), capture_output=True,
                                  text=True, timeout=900)
            status, output = done.returncode, done.stdout + done.stderr
        assert status == 0, f"exit status {status}:\n$ {line}\n{output[-3000:]}"


@pytest.mark.parametrize("block", RUNNABLE, ids=lambda b: b.id)
def test_the_readme_block_runs(block, folder):
    if block.marker:
        pytest.skip(f"README.md line {block.line}: not run by the README test: {block.marker}")
    code = shrink(block.code)
    if block.language in PYTHON:
        done = subprocess.run([sys.executable, "-c", code], cwd=folder, env=_env(),
                              capture_output=True, text=True, timeout=900)
        assert done.returncode == 0, f"README.md line {block.line}:\n{done.stderr[-3000:]}"
    else:
        _run_shell(code, folder)


# ------------------------------------------------------------------- what the text claims
def test_the_python_version_is_pyprojects():
    text = (ROOT / "pyproject.toml").read_text()
    minimum = re.search(r'^requires-python\s*=\s*">=\s*(3\.\d+)"', text, re.M).group(1)
    readme = README.read_text()
    assert f"Python {minimum}+" in readme
    claims = set(re.findall(r"Python (3\.\d+)\+", readme))
    assert claims <= {minimum}, f"README.md says Python {claims}; requires-python says {minimum}+"


def test_the_readme_links_to_this_repository_and_its_pages():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    owner, name = url.split("github.com/")[1].split("/")
    readme = README.read_text()
    repos = set(re.findall(r"github\.com/([\w.-]+/[\w.-]+?)(?:\.git)?(?=[/\s\"')]|$)", readme))
    assert repos == {f"{owner}/{name}"}, f"README.md links to {repos}; _config.yml says {url}"
    assert f"https://{owner}.github.io/{name}/" in readme  # where the publish workflow puts it
    assert "git tag v" in readme and "git push origin v" in readme


def test_the_repository_map_names_what_is_there():
    """Every name in the README's map of the repository (before the description) exists."""
    block = next(b for b in BLOCKS if b.language == "text" and "src/intro_dgm/" in b.code)
    for line in block.code.splitlines():
        for name in re.split(r"\s{2,}", line.strip())[0].split():
            assert (ROOT / name).exists(), f"README.md's map names {name}, which is not there"
