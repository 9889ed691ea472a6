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
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    # notebook and package from one commit: the release tag v<version> (the publishing
    # workflow points the launch buttons at the same tag)
    assert f'"intro_dgm @ git+{url}@v{version}"' in text, \
        f"the Colab install cell must install the release v{version} from _config.yml's url"
    assert (f"colab.research.google.com/github/{url.split('github.com/')[1]}/blob/v{version}/"
            f"notebooks/{path.name}") in text
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


#: The package's layers, bottom to top: each may import only layers before it (the package
#: docstring states the same order). A layer is a module, or a subpackage as a whole (its
#: modules import one another with level-1 relative imports).
ORDER = ["utils", "distributions", "data", "nets", "plotting", "flows", "priors", "posteriors",
         "encoders", "decoders", "models", "training", "evaluation", "ood", "analysis", "runs",
         "protocol", "checkpoints", "widgets", "cli"]
PACKAGE = ROOT / "src" / "intro_dgm"


def _layer(path: Path) -> str:
    """The layer of a file of the package: its subpackage's name, or the module's own."""
    parts = path.relative_to(PACKAGE).parts
    return parts[0] if len(parts) > 1 else path.stem


def layer_imports(path: Path) -> list[str]:
    """The layers ``path`` imports with relative imports, leaving out those of its own
    subpackage (level 1 inside a subpackage) and names that are not modules of the package
    (``from . import __version__``)."""
    import ast

    depth = len(path.relative_to(PACKAGE).parts) - 1  # 0: a module, 1: in a subpackage
    targets = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not isinstance(node, ast.ImportFrom) or not node.level:
            continue
        if depth and node.level == 1:
            continue  # one module of a subpackage importing another
        assert node.level == depth + 1, \
            f"{path.relative_to(ROOT)}: a relative import of level {node.level} leaves the package"
        names = [node.module.split(".")[0]] if node.module else [a.name for a in node.names]
        targets += [n for n in names if n in ORDER]
    return targets


def test_the_import_graph_flows_one_way():
    files = [p for p in PACKAGE.rglob("*.py") if p != PACKAGE / "__init__.py"]
    for path in files:
        name = _layer(path)
        assert name in ORDER, f"{path.relative_to(ROOT)} is not placed in ORDER"
        for target in layer_imports(path):
            assert ORDER.index(target) < ORDER.index(name), \
                f"{path.relative_to(ROOT)} imports {target}, which is not below it"


#: The most lines a module may have: past it, it holds more than one idea; split it.
MAX_MODULE_LINES = 400


def modules_over(limit: int) -> dict[str, int]:
    """The package's modules longer than ``limit`` lines: path -> number of lines."""
    lengths = {str(p.relative_to(ROOT)): len(p.read_text().splitlines())
               for p in sorted(PACKAGE.rglob("*.py"))}
    return {path: n for path, n in lengths.items() if n > limit}


def test_no_module_exceeds_the_line_limit():
    long = modules_over(MAX_MODULE_LINES)
    assert not long, (f"modules over {MAX_MODULE_LINES} lines; split each into modules that "
                      f"hold one idea: {long}")


# ------------------------------------------------------------------ CUDA (e.g. Colab's GPU)
# Devices follow the model. fit() trains on `device` (CUDA when there is one) and leaves the
# model there; a notebook moves it back with `model.cpu()` before calling it on CPU tensors,
# as protocol.run() does; the package's functions move their inputs to the model's device.
# A tensor becomes a NumPy array only through `.cpu()`: `.numpy()` of a CUDA tensor raises,
# and `.cpu()` of a CPU tensor is the tensor itself (no copy, the same numbers).
PACKAGE_MODULES = sorted((ROOT / "src" / "intro_dgm").rglob("*.py"))


def _code_cells(path):
    """The code cells of a notebook as Python: IPython magics and shell lines become `pass`."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    return [re.sub(r"^(\s*)[%!].*$", r"\1pass", "".join(c["source"]), flags=re.M) for c in cells]


def _sources(path):
    return _code_cells(path) if path.suffix == ".ipynb" else [path.read_text()]


def _made_cpu(expr) -> bool:
    """Whether the chain ``expr`` (the receiver of a ``.numpy()``) passes through ``.cpu()``
    or ``.to("cpu")``; attributes and indexing (``.T``, ``[0]``) keep following the chain."""
    import ast

    while True:
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute):
            if expr.func.attr == "cpu" or (expr.func.attr == "to" and any(
                    isinstance(a, ast.Constant) and a.value == "cpu" for a in expr.args)):
                return True
            expr = expr.func.value
        elif isinstance(expr, (ast.Attribute, ast.Subscript)):
            expr = expr.value
        else:
            return False


def numpy_off_the_cpu(source: str) -> list[str]:
    """Every ``<tensor>.numpy()`` in ``source`` not made CPU-safe first: ``.cpu()`` (or
    ``.to("cpu")``) before the ``.numpy()`` in the same chain, or ``.numpy(force=True)``."""
    import ast

    bad = []
    for node in ast.walk(ast.parse(source)):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "numpy"):
            continue
        forced = any(k.arg == "force" and isinstance(k.value, ast.Constant) and k.value.value is True
                     for k in node.keywords)
        if not forced and not _made_cpu(node.func.value):
            bad.append(ast.unparse(node))
    return bad


def fitted_models_left_on_the_device(cells: list[str]) -> list[str]:
    """Every ``fit(model, ...)`` of a notebook whose model is not moved back by a
    ``model.cpu()`` after the call, in the same code cell or the next (unless trained with
    ``device="cpu"``)."""
    import ast

    bad = []
    for i, source in enumerate(cells):
        lines = source.splitlines()
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and node.args and (
                    (isinstance(node.func, ast.Name) and node.func.id == "fit")
                    or (isinstance(node.func, ast.Attribute) and node.func.attr == "fit"
                        and isinstance(node.func.value, ast.Name)
                        and node.func.value.id == "training"))):
                continue
            if any(k.arg == "device" and isinstance(k.value, ast.Constant) and k.value.value == "cpu"
                   for k in node.keywords):
                continue
            model = ast.unparse(node.args[0])
            after = "\n".join([lines[node.end_lineno - 1][node.end_col_offset:],
                               *lines[node.end_lineno:], *cells[i + 1:i + 2]])
            if f"{model}.cpu()" not in after:
                bad.append(f"code cell {i}: {ast.unparse(node)}")
    return bad


@pytest.mark.parametrize("source, offending", [
    ("x = model.sample(4).numpy()", ["model.sample(4).numpy()"]),
    ("print(q.mean.detach().numpy().round(3))", ["q.mean.detach().numpy()"]),
    ("a = (x - y).numpy()", ["(x - y).numpy()"]),
    ("z = x.numpy().cpu()", ["x.numpy()"]),                  # .cpu() after .numpy() is too late
    ("b = np.asarray(x.cpu()).numpy()", ["np.asarray(x.cpu()).numpy()"]),  # .cpu() not in the chain
    ("import sys\nif 'google.colab' in sys.modules:\n    %pip install -q intro_dgm\nw.grad.numpy()",
     ["w.grad.numpy()"]),
    ("x.detach().cpu().numpy(); y.cpu().T.numpy(); v.cpu()[0].numpy()", []),
    ("x.to('cpu').numpy(); y.numpy(force=True)", []),
])
def test_the_numpy_check_finds_a_tensor_not_moved_to_the_cpu(source, offending):
    assert numpy_off_the_cpu(re.sub(r"^(\s*)[%!].*$", r"\1pass", source, flags=re.M)) == offending


@pytest.mark.parametrize("path", NOTEBOOKS + PACKAGE_MODULES, ids=lambda p: p.name)
def test_numpy_is_called_only_on_cpu_tensors(path):
    bad = [expr for source in _sources(path) for expr in numpy_off_the_cpu(source)]
    assert not bad, (f"{path.name}: .numpy() of a tensor that may live on the GPU; write "
                     f".cpu().numpy() (.cpu() of a CPU tensor is free): {bad}")


@pytest.mark.parametrize("cells, offending", [
    (["h = fit(model, x, v, seed=0)", "model.loss(x)"], ["code cell 0: fit(model, x, v, seed=0)"]),
    (["model.cpu()\nfit(model, x, v)", "model.loss(x)"], ["code cell 0: fit(model, x, v)"]),
    (["fit(toys[T], x, v)", "", "toys[T].cpu()"], ["code cell 0: fit(toys[T], x, v)"]),
    (["h = fit(m, x, v, device=device)\nm = m.cpu()"], []),
    (["h = training.fit(m, x, v)", "m.cpu().loss(x)"], []),
    (["fit(m, x, v, device='cpu')", "m.loss(x)"], []),
    (["PPCA(2).fit(x)", "KNeighborsClassifier(5).fit(a, b)"], []),
])
def test_the_fit_check_finds_a_model_left_on_the_training_device(cells, offending):
    assert fitted_models_left_on_the_device(cells) == offending


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebooks_move_fitted_models_back_to_the_cpu(path):
    bad = fitted_models_left_on_the_device(_code_cells(path))
    assert not bad, (f"{path.name}: fit() leaves the model on the training device (CUDA when "
                     f"there is one); move it back with model.cpu() before calling it on CPU "
                     f"tensors: {bad}")


# ------------------------------------------------------------------ registries
#: Every registry of the package (names -> things), as ``module:NAME``.
REGISTRIES = ["intro_dgm.models:MODELS", "intro_dgm.priors:PRIORS",
              "intro_dgm.encoders:POSTERIORS", "intro_dgm.decoders:DECODERS",
              "intro_dgm.training:OPTIMIZERS", "intro_dgm.runs.metrics:EXTRA_METRICS",
              "intro_dgm.data:DATASETS", "intro_dgm.models.schedules:SCHEDULES"]


@pytest.mark.parametrize("where", REGISTRIES)
def test_every_registry_answers_an_unknown_name_the_same_way(where):
    import importlib

    from intro_dgm.utils import Registry

    module, name = where.split(":")
    reg = getattr(importlib.import_module(module), name)
    assert isinstance(reg, Registry), f"{where} is a {type(reg).__name__}, not a Registry"
    assert len(reg) > 0, f"{where} is empty"
    message = f"{reg.kind} must be one of {', '.join(reg)}; got 'no-such-name'"
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        reg["no-such-name"]
    with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
        reg.lookup("no-such-name")
    before = dict(reg)
    existing = next(iter(reg))
    with pytest.raises(ValueError, match="registered already"):
        reg.register(existing, reg[existing])
    with pytest.raises(TypeError, match="register"):
        reg[existing] = reg[existing]
    assert dict(reg) == before


# ------------------------------------------------------------------ API reference
def test_the_api_page_documents_every_module():
    """book/api.md has one ``.. automodule::`` section for every module of the package (a
    package as its dotted name, from its ``__init__.py``) and names no module that does not
    exist."""
    modules = sorted(".".join((PACKAGE.name, *p.relative_to(PACKAGE).with_suffix("").parts))
                     .removesuffix(".__init__") for p in PACKAGE.rglob("*.py"))
    documented = re.findall(r"^\.\. automodule::\s+(\S+)\s*$",
                            (ROOT / "book" / "api.md").read_text(), re.M)
    missing = [m for m in modules if m not in documented]
    assert not missing, f"book/api.md has no automodule section for {missing}"
    twice = sorted({m for m in documented if documented.count(m) > 1})
    assert not twice, f"book/api.md documents these modules more than once: {twice}"
    unknown = [m for m in documented if m not in modules]
    assert not unknown, f"book/api.md names modules that do not exist: {unknown}"
