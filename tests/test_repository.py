"""Checks on the repository itself: notebooks, table of contents, intro, configuration, dependencies."""
import json
import posixpath
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def _requirement_names(reqs):
    return {re.split(r"[<>=!~\[ ]", r, maxsplit=1)[0].strip().lower().replace("_", "-") for r in reqs}


def _page(name):
    """A toc entry or doc target as a path from the repository root, without its suffix."""
    return re.sub(r"\.(md|ipynb|rst)$", "", name.strip().lstrip("/"))


def _toc():
    return yaml.safe_load((ROOT / "_toc.yml").read_text())


def _files_under(node):
    """Every ``file:`` entry below a node of _toc.yml, in reading order (sections included)."""
    if isinstance(node, dict):
        return ([_page(node["file"])] if "file" in node else []) + \
            [f for v in node.values() for f in _files_under(v)]
    if isinstance(node, list):
        return [f for item in node for f in _files_under(item)]
    return []


def toc_parts():
    """The parts of _toc.yml as ``[(caption, [page, ...]), ...]``, the root page left out."""
    toc = _toc()
    if "parts" not in toc:
        return [(None, _files_under(toc.get("chapters", [])))]
    return [(part.get("caption"), _files_under(part)) for part in toc["parts"]]


def toc_pages():
    """Every page of _toc.yml: the root, then every ``file:`` entry."""
    return [_page(_toc()["root"])] + [f for _, files in toc_parts() for f in files]


def intro_chapter_list():
    """The chapter list of book/intro.md (its section "## The chapters") as
    ``[(part heading, [page, ...]), ...]``: each ``### heading`` starts a part, and every
    ``{doc}`` reference under it is one page (resolved relative to book/)."""
    text = (ROOT / "book" / "intro.md").read_text()
    match = re.search(r"^## The chapters\s*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, "book/intro.md has no section '## The chapters'"
    parts = []
    for line in match.group(1).splitlines():
        if line.startswith("### "):
            parts.append((line[4:].strip(), []))
        for target in re.findall(r"\{doc\}`([^`]+)`", line):
            target = re.sub(r"^.*<(.+)>$", r"\1", target)
            page = _page(target) if target.startswith("/") else _page(posixpath.normpath(f"book/{target}"))
            assert parts, f"{page} is listed in book/intro.md before the first part heading"
            parts[-1][1].append(page)
    return parts


def test_notebooks_are_those_in_the_table_of_contents():
    in_toc = {p.split("/", 1)[1] for p in toc_pages() if p.startswith("notebooks/")}
    on_disk = {p.stem for p in NOTEBOOKS}
    assert on_disk, "no notebooks in notebooks/"
    assert not on_disk - in_toc, f"notebooks not in _toc.yml: {sorted(on_disk - in_toc)}"
    assert not in_toc - on_disk, f"_toc.yml names notebooks that do not exist: {sorted(in_toc - on_disk)}"


def test_every_page_of_the_table_of_contents_exists():
    missing = [p for p in toc_pages() if not any((ROOT / f"{p}{ext}").is_file() for ext in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml names pages with no .md or .ipynb file: {missing}"


def test_intro_lists_every_part_and_page_of_the_table_of_contents():
    expected, listed = toc_parts(), intro_chapter_list()
    toc = {p for _, pages in expected for p in pages}
    in_intro = [p for _, pages in listed for p in pages]
    missing = [p for _, pages in expected for p in pages if p not in in_intro]
    assert not missing, f"pages of _toc.yml missing from book/intro.md's chapter list: {missing}"
    extra = [p for p in in_intro if p not in toc]
    assert not extra, f"book/intro.md's chapter list names pages that are not in _toc.yml: {extra}"
    captions, headings = [c for c, _ in expected], [h for h, _ in listed]
    assert headings == captions, \
        f"book/intro.md's chapter list has the parts {headings}; _toc.yml has {captions}"
    for (caption, pages), (_, pages_listed) in zip(expected, listed):
        assert pages_listed == pages, \
            f"part {caption!r}: _toc.yml has {pages}, book/intro.md lists {pages_listed}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_are_committed_without_outputs(path):
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_use_the_one_repository_url(path):
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"].rstrip("/")
    text = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"])
    assert f"git+{url}" in text, "the Colab install cell must install from _config.yml's repository url"
    assert f"colab.research.google.com/github/{url.split('github.com/')[1]}/blob/main/notebooks/{path.name}" in text
    assert not re.search(r"github\.com/(?!" + re.escape(url.split("github.com/")[1]) + ")[\\w-]+/[\\w-]+", text)


def test_environment_yml_names_the_same_dependencies_as_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = set(project["dependencies"])
    for extra in project["optional-dependencies"].values():
        wanted |= set(extra)
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d for d in env["dependencies"] if isinstance(d, dict))["pip"]
    listed = [p for p in pip if not p.startswith("-e")]
    assert sorted(listed) == sorted(wanted)
    assert "-e .[book,test]" in pip
    assert _requirement_names(listed) == _requirement_names(wanted)


def test_torch_requirement_stays_open():
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_req = next(d for d in deps if d.startswith("torch"))
    assert "==" not in torch_req and ">=" in torch_req  # Colab keeps its own CUDA build


def test_ci_calls_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    assert "make test" in readme and "make book" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


#: The package's modules, bottom to top: each may import only modules before it (the
#: package docstring states the same order).
ORDER = ["utils", "distributions", "data", "nets", "plotting", "flows", "priors", "posteriors",
         "encoders", "decoders", "models", "training", "evaluation", "analysis", "protocol",
         "checkpoints", "widgets", "cli"]


def test_the_import_graph_flows_one_way():
    import ast

    src = ROOT / "src" / "intro_dgm"
    files = [p for p in src.rglob("*.py") if p != src / "__init__.py"]
    for path in files:
        inside_models = path.parent.name == "models"
        name = "models" if inside_models else path.stem
        assert name in ORDER, f"{path.relative_to(ROOT)} is not placed in ORDER"
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.ImportFrom) or not node.level or node.module is None:
                continue
            if inside_models and node.level == 1:
                continue  # one module of the models package importing another
            target = node.module.split(".")[0]
            assert ORDER.index(target) < ORDER.index(name), \
                f"{path.relative_to(ROOT)} imports {target}, which is not below it"
