"""Check the committed notebooks the way CI must: paired, in sync, executed, with the common opening.

Usage: python tools/check_notebooks.py notebooks/01_augmentations.ipynb [...]

For each notebook it fails (exit 1, one line per problem) when:
* the paired `.py` percent script is missing or its cells differ from the `.ipynb` (run `make sync`);
* a code cell has not been executed or the notebook has no outputs (run `make notebooks`);
* the first code cell is not `tools/colab_cell.py`'s COLAB_CELL, or the title cell lacks the badge;
* a code cell is longer than a screenful (MAX_CELL_LINES lines).
"""

import pathlib
import sys

import jupytext

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from colab_cell import COLAB_CELL, colab_badge  # noqa: E402

MAX_CELL_LINES = 40


def _cells(notebook):
    return [(cell.cell_type, cell.source.strip()) for cell in notebook.cells]


def problems(ipynb_path: pathlib.Path) -> list:
    found = []
    py_path = ipynb_path.with_suffix(".py")
    if not py_path.exists():
        return [f"{ipynb_path}: no paired percent script {py_path.name} (jupytext --sync)"]
    ipynb = jupytext.read(ipynb_path)
    script = jupytext.read(py_path)
    if _cells(ipynb) != _cells(script):
        for i, (a, b) in enumerate(zip(_cells(ipynb), _cells(script))):
            if a != b:
                found.append(f"{ipynb_path}: cell {i} differs from {py_path.name}; run `make sync`")
                break
        else:
            found.append(f"{ipynb_path}: {len(ipynb.cells)} cells but {py_path.name} has "
                         f"{len(script.cells)}; run `make sync`")
    code = [cell for cell in ipynb.cells if cell.cell_type == "code"]
    if not code or not any(cell.get("outputs") for cell in code):
        found.append(f"{ipynb_path}: no outputs; execute it with `make notebooks`")
    unexecuted = [i for i, cell in enumerate(code) if cell.get("execution_count") is None]
    if unexecuted:
        found.append(f"{ipynb_path}: code cells {unexecuted} were never executed; `make notebooks`")
    if not code or code[0].source.strip() != COLAB_CELL.strip():
        found.append(f"{ipynb_path}: the first code cell must be COLAB_CELL from tools/colab_cell.py")
    title = ipynb.cells[0].source if ipynb.cells else ""
    if colab_badge(ipynb_path.stem) not in title:
        found.append(f"{ipynb_path}: the first cell lacks the Colab badge {colab_badge(ipynb_path.stem)}")
    for i, cell in enumerate(code):
        lines = cell.source.count("\n") + 1
        if lines > MAX_CELL_LINES:
            found.append(f"{ipynb_path}: code cell {i} has {lines} lines (at most {MAX_CELL_LINES})")
    return found


def main(paths) -> int:
    all_problems = [p for path in paths for p in problems(pathlib.Path(path))]
    for problem in all_problems:
        print(problem)
    print(f"checked {len(paths)} notebook(s): {len(all_problems)} problem(s)")
    return 1 if all_problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
