"""The project's own files agree with each other: dependencies, notebooks, commands."""

import importlib.metadata
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _pyproject_requirements() -> dict:
    """Requirement strings of the installed project, runtime and extras, keyed by package name."""
    reqs = {}
    for req in importlib.metadata.requires("bt-helpers"):
        spec = req.split(";")[0].strip()
        if _name(spec) != "bt-helpers":  # the `dev` extra pulls in the other extras
            reqs[_name(spec)] = spec.replace(" ", "")
    return reqs


def _environment_requirements() -> dict:
    text = (ROOT / "environment.yml").read_text()
    pip_section = text.split("- pip:", 1)[1]
    reqs = {}
    for line in pip_section.splitlines():
        match = re.match(r"^\s+-\s+(\S.*)$", line)
        if match and not match.group(1).startswith("-e"):
            reqs[_name(match.group(1))] = match.group(1).replace(" ", "")
    return reqs


def test_environment_yml_matches_pyproject():
    assert _environment_requirements() == _pyproject_requirements(), (
        "environment.yml and pyproject.toml list different dependencies; update both together.")


def test_no_dead_dependencies():
    assert "tensorflow-addons" not in _pyproject_requirements()


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "make test" in readme and "make lab" in readme
    assert re.search(r"^make test$", ci, re.M)


def test_colab_cell_names_the_package_repo():
    import sys

    import bt_helpers

    sys.path.insert(0, str(ROOT / "tools"))
    from colab_cell import COLAB_CELL

    assert f'REPO_URL = "{bt_helpers.REPO_URL}"' in COLAB_CELL
