"""A learner's session in a real browser: JupyterLab + Debian's Chromium, driven by Playwright.

For notebooks 01 and 02 it opens the notebook in JupyterLab, runs every cell (``ci`` preset), moves a
slider of the explorer and asserts that the explorer's image changed, saving screenshots under
``build/``. Run with ``make test-browser`` (which installs Chromium with apt-get when it is missing).
"""

import os
import pathlib
import shutil
import signal
import socket
import subprocess
import time
import urllib.request

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("BT_CHROMIUM", "/usr/bin/chromium")
TOKEN = "bt-browser-test"
KERNEL_IDLE = """(() => {
  const session = window.jupyterapp.shell.currentWidget?.sessionContext?.session;
  return session?.kernel?.status === "idle";
})()"""
# (notebook, CSS class of the explorer widget)
EXPLORERS = [
    ("01_augmentations", "bt-augmentation-explorer"),
    ("02_cross_correlation", "bt-correlation-explorer"),
]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def lab_url(tmp_path_factory):
    if not shutil.which(CHROMIUM):
        pytest.fail(f"Chromium not found at {CHROMIUM}: run `make test-browser`, which installs "
                    "Debian's chromium package, or set BT_CHROMIUM to a Chromium binary.")
    # A copy, so that JupyterLab's autosave never writes ci-preset outputs into the course.
    served = tmp_path_factory.mktemp("notebooks")
    for name, _ in EXPLORERS:
        shutil.copy(ROOT / "notebooks" / f"{name}.ipynb", served)
    port = _free_port()
    env = dict(os.environ, BT_PRESET="ci", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.token={TOKEN}", "--LabApp.expose_app_in_browser=True",
         "--allow-root", f"--notebook-dir={served}"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=5)
            break
        except OSError:
            assert time.monotonic() < deadline and proc.poll() is None, "JupyterLab did not start"
            time.sleep(1)
    yield base
    os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.fail("Playwright is missing: `make test-browser` installs the project's dev extras.")
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"])
        yield browser
        browser.close()


def _explorer_image(explorer):
    """The src of the explorer's current figure (a base64 PNG), or None while it renders."""
    images = explorer.locator("img")
    return images.first.get_attribute("src") if images.count() else None


@pytest.mark.parametrize("notebook, css_class", EXPLORERS)
def test_explorer_slider_changes_the_image(lab_url, browser, notebook, css_class):
    out = ROOT / "build"
    out.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.goto(f"{lab_url}/lab/tree/{notebook}.ipynb?token={TOKEN}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.commands", timeout=60_000)
    page.wait_for_function(KERNEL_IDLE, timeout=120_000)
    # Not awaited: the command's promise settles only when every cell has run.
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    explorer = page.locator(f".{css_class}").first
    explorer.wait_for(timeout=240_000)
    explorer.scroll_into_view_if_needed()
    page.wait_for_function(
        f"document.querySelector('.{css_class} img') !== null", timeout=120_000)
    before = _explorer_image(explorer)
    page.screenshot(path=str(out / f"browser-{notebook}-before.png"))

    handle = explorer.locator(".noUi-handle").first
    handle.focus()
    for _ in range(3):
        handle.press("ArrowRight")
    deadline = time.monotonic() + 120
    while _explorer_image(explorer) in (before, None):
        assert time.monotonic() < deadline, "the explorer's image did not change after the slider moved"
        time.sleep(0.5)
    explorer.scroll_into_view_if_needed()
    page.screenshot(path=str(out / f"browser-{notebook}-after.png"))
    page.close()
