"""The Colab cell that opens every notebook, kept in one place.

`tools/check_notebooks.py` fails when a notebook's first code cell differs from `COLAB_CELL`.
The repository URL inside it must equal `bt_helpers.REPO_URL`.
"""

COLAB_CELL = '''\
# Colab only: install the course package, and use the full preset on a GPU runtime.
# Outside Colab this cell does nothing (`make lab` has installed everything).
import os
import shutil
import subprocess
import sys

if "google.colab" in sys.modules:
    REPO_URL = "https://github.com/barlow-twins-course/barlow-twins-course"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", f"git+{REPO_URL}"], check=True)
    if shutil.which("nvidia-smi") and subprocess.run(["nvidia-smi"]).returncode == 0:
        os.environ.setdefault("BT_PRESET", "full")'''


def colab_badge(notebook_name: str) -> str:
    """Markdown for the 'Open in Colab' badge of `notebooks/<notebook_name>.ipynb`."""
    from bt_helpers import REPO_URL

    path = REPO_URL.removeprefix("https://github.com/")
    return (f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
            f"(https://colab.research.google.com/github/{path}/blob/main/notebooks/{notebook_name}.ipynb)")
