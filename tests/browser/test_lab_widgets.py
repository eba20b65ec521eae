"""A learner's session in a real browser: JupyterLab + Debian's Chromium, driven by Playwright.

For notebooks 01 and 02 it opens the notebook in JupyterLab, clears the saved outputs, runs every
cell (``ci`` preset), checks that every code cell ran without an error, moves a slider of the
explorer and asserts that the explorer's image changed, saving screenshots under ``build/`` (also
when a step fails). JupyterLab runs with its own settings (every cell rendered, no news fetch) and
workspace folders, so nothing in the user's JupyterLab configuration changes the outcome. Run with ``make test-browser`` (which installs Chromium with apt-get when it is missing).
"""

import json
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
#: JupyterLab settings of the test server: render every cell (JupyterLab 4 otherwise skips the
#: layout of cells outside the viewport, and an explorer down the notebook is never "visible"),
#: and no news request on start.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
}
KERNEL_IDLE = """(() => {
  const session = window.jupyterapp.shell.currentWidget?.sessionContext?.session;
  return session?.kernel?.status === "idle";
})()"""
# Code cells of the current notebook, how many have run (an execution count) and their errors.
RUN_STATE = """(() => {
  const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
  const state = {code: 0, ran: 0, errors: []};
  for (let i = 0; i < cells.length; i++) {
    const cell = cells.get(i);
    if (cell.type !== "code") continue;
    state.code += 1;
    if (cell.executionCount) state.ran += 1;
    for (let j = 0; j < cell.outputs.length; j++) {
      const output = cell.outputs.get(j).toJSON();
      if (output.output_type === "error") state.errors.push(`cell ${i}: ${output.ename}: ${output.evalue}`);
    }
  }
  return state;
})()"""
# The outputs of the cell that shows an explorer: their types and the text shown in their place.
EXPLORER_OUTPUTS = """(() => {
  const notebook = window.jupyterapp.shell.currentWidget.content;
  const found = [];
  notebook.widgets.forEach((cell) => {
    if (cell.model.type !== "code" || !cell.model.sharedModel.source.includes("_explorer(")) return;
    const outputs = [];
    for (let j = 0; j < cell.model.outputs.length; j++) {
      const output = cell.model.outputs.get(j).toJSON();
      outputs.push(output.output_type + ": " + Object.keys(output.data || {}).join(","));
    }
    found.push({outputs, shown: cell.node.querySelector(".jp-OutputArea")?.innerText?.slice(0, 500)});
  });
  return JSON.stringify(found);
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
    settings = tmp_path_factory.mktemp("lab-settings")
    for name, values in LAB_SETTINGS.items():
        (settings / name).parent.mkdir(parents=True, exist_ok=True)
        (settings / name).write_text(json.dumps(values))
    workspaces = tmp_path_factory.mktemp("lab-workspaces")
    port = _free_port()
    env = dict(os.environ, BT_PRESET="ci", TF_CPP_MIN_LOG_LEVEL="2")
    proc = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "jupyter"), "lab", "--no-browser", "--ip=127.0.0.1",
         f"--port={port}", f"--ServerApp.token={TOKEN}", "--LabApp.expose_app_in_browser=True",
         "--allow-root", f"--notebook-dir={served}", f"--LabApp.user_settings_dir={settings}",
         f"--LabApp.workspaces_dir={workspaces}"],
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


def _run_all(page, notebook):
    """Clears the outputs, runs every cell, waits until each code cell has run; fails with
    the cells' errors."""
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:clear-all-cell-outputs')")
    # Not awaited: the command's promise settles only when every cell has run.
    page.evaluate("() => { void window.jupyterapp.commands.execute('notebook:run-all-cells'); }")
    try:
        page.wait_for_function(f"(() => {{ const s = {RUN_STATE}; return s.errors.length > 0 || "
                               f"(s.ran === s.code && {KERNEL_IDLE}); }})()",
                               timeout=300_000, polling=1000)
    except Exception:
        state = page.evaluate(f"() => {RUN_STATE}")
        pytest.fail(f"{notebook}: {state['ran']} of {state['code']} code cells ran in 300 s; "
                    f"errors: {state['errors'] or 'none'}")
    state = page.evaluate(f"() => {RUN_STATE}")
    assert not state["errors"], f"{notebook}: cells failed: {state['errors']}"


@pytest.mark.parametrize("notebook, css_class", EXPLORERS)
def test_explorer_slider_changes_the_image(lab_url, browser, notebook, css_class):
    out = ROOT / "build"
    out.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # A workspace of its own, reset: only this notebook open (restoring the previous
        # test's notebook next to it left this one's widgets unrendered, as plain text).
        page.goto(f"{lab_url}/lab/workspaces/{notebook}/tree/{notebook}.ipynb"
                  f"?reset&token={TOKEN}")
        page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
        page.wait_for_function("window.jupyterapp && window.jupyterapp.commands", timeout=60_000)
        page.wait_for_function(KERNEL_IDLE, timeout=120_000)
        _run_all(page, notebook)
        explorer = page.locator(f".{css_class}").first
        try:
            explorer.wait_for(state="attached", timeout=60_000)
        except Exception:
            pytest.fail(f"{notebook}: no .{css_class} element after every cell ran; outputs of "
                        f"the explorer cell: {page.evaluate(EXPLORER_OUTPUTS)}")
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
            assert time.monotonic() < deadline, \
                "the explorer's image did not change after the slider moved"
            time.sleep(0.5)
        explorer.scroll_into_view_if_needed()
        page.screenshot(path=str(out / f"browser-{notebook}-after.png"))
    except BaseException:
        page.screenshot(path=str(out / f"browser-{notebook}-failed.png"), full_page=True)
        raise
    finally:
        page.evaluate("() => window.jupyterapp?.shell.currentWidget?.sessionContext?.shutdown()")
        page.close()
