"""Time every notebook, executed headless top to bottom, and print the seconds as JSON.

    BT_PRESET=teaching BT_DATA_DIR=/path/to/cifar10 python benchmarks/time_notebooks.py [--in-place]

Each notebook runs in a fresh kernel of this environment with the preset from BT_PRESET. Executed
copies go to build/ (or replace the committed .ipynb with --in-place, which is what
`make notebooks` does). The README's runtime column comes from this script.
"""

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time

import jupytext
import nbformat
from nbclient import NotebookClient

ROOT = pathlib.Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", help="default: every notebooks/NN_*.py")
    parser.add_argument("--in-place", action="store_true",
                        help="write outputs into notebooks/NN_*.ipynb instead of build/")
    parser.add_argument("--timeout", type=int, default=1800, help="seconds per cell")
    args = parser.parse_args()
    scripts = [pathlib.Path(p) for p in args.notebooks] or sorted(
        (ROOT / "notebooks").glob("[0-9][0-9]_*.py"))
    results = {}
    for script in scripts:
        script = script.with_suffix(".py")
        notebook = jupytext.read(script)
        target = script.with_suffix(".ipynb") if args.in_place else ROOT / "build" / (script.stem + ".ipynb")
        target.parent.mkdir(exist_ok=True)
        start = time.perf_counter()
        NotebookClient(notebook, timeout=args.timeout, kernel_name="python3",
                       resources={"metadata": {"path": str(script.parent)}}).execute()
        results[script.stem] = round(time.perf_counter() - start, 1)
        jupytext.write(notebook, target, fmt="ipynb")
        print(f"{script.stem}: {results[script.stem]} s", file=sys.stderr)
    print(json.dumps({
        "preset": os.environ.get("BT_PRESET", "(default)"),
        "data_dir": os.environ.get("BT_DATA_DIR"),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "date": datetime.date.today().isoformat(),
        "seconds": results,
        "total_seconds": round(sum(results.values()), 1),
    }, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
