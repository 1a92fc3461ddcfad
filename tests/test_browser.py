"""A real browser drives the studio: JupyterLab and Voilà, Chromium through Playwright, tiny model.

JupyterLab starts on 127.0.0.1 with a token and fresh temporary root, config, data and runtime
folders; the studio notebook is copied there (so the repository's copy never gets outputs).
Chromium (Debian's, through ``executable_path``: Playwright cannot download browsers here) opens
it, runs all cells, types a prompt into the text panel, presses Generate and waits for an audio
player and the spectrogram image in the panel. The same is done with ``voila`` serving the
notebook as a plain web page. Screenshots go to ``test-artifacts/``.

Run with ``MGTOOLKIT_MODEL=tiny pytest -m browser tests/test_browser.py``.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(900)]

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = ROOT / "test-artifacts"
STUDIO = ROOT / "notebooks" / "04_studio.ipynb"
CHROMIUM = os.environ.get("MGTOOLKIT_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-dev-shm-usage",
]
PROMPT = "Gentle harp arpeggios over warm strings"
SERVER_START_S = 120
RUN_ALL_S = 420
GENERATE_S = 300


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - 127.0.0.1 only
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout:.0f} s")


def _env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        folder = home / name.lower()
        folder.mkdir()
        env[name] = str(folder)
    env["MGTOOLKIT_MODEL"] = "tiny"  # the kernel inherits it
    env["HF_HUB_OFFLINE"] = "1"
    return env


def _start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    handle = log.open("wb")
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's Chromium through Playwright, or a skip that says what is missing."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (or set MGTOOLKIT_CHROMIUM)")
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    """A fresh root holding a copy of the studio notebook."""
    (tmp_path / "root" / "notebooks").mkdir(parents=True)
    shutil.copy(STUDIO, tmp_path / "root" / "notebooks" / STUDIO.name)
    return tmp_path


def _server(cmd: list[str], workdir: Path, ready_path: str, name: str) -> Iterator[str]:
    pytest.importorskip(name.split("-")[0], reason=f"{name} is not installed")
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    cmd = [part.format(port=port, token=token, root=workdir / "root") for part in cmd]
    proc = _start(cmd, workdir / "root", _env(workdir), workdir / f"{name}.log")
    try:
        _wait_http(f"{base}{ready_path}?token={token}", proc, SERVER_START_S)
        yield f"{base}|{token}"
    finally:
        _stop(proc)


@pytest.fixture()
def lab(workdir: Path) -> Iterator[str]:
    cmd = [
        sys.executable,
        "-m",
        "jupyter",
        "lab",
        "--no-browser",
        "--ServerApp.ip=127.0.0.1",
        "--ServerApp.port={port}",
        "--IdentityProvider.token={token}",
        "--ServerApp.root_dir={root}",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=",
        "--LabApp.extension_manager=readonly",
        "--allow-root",
    ]
    yield from _server(cmd, workdir, "/api/status", "jupyterlab")


@pytest.fixture()
def voila(workdir: Path) -> Iterator[str]:
    voila_bin = [sys.executable, "-m", "voila"]
    cmd = [
        *voila_bin,
        f"notebooks/{STUDIO.name}",
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        "--port={port}",
        "--token={token}",
    ]
    yield from _server(cmd, workdir, "/", "voila")


def _generate_in_studio(page, timeout_s: float) -> None:
    """Type a prompt into the text panel, press Generate, wait for the player and spectrogram."""
    studio = page.locator(".mg-studio").first
    prompt = studio.locator(".mg-panel textarea").first
    prompt.fill(PROMPT)
    prompt.press("Tab")  # blur: the widget syncs its value
    panel = studio.locator(".mg-panel").first
    panel.locator("button", has_text=re.compile(r"^\s*Generate\s*$")).first.click()
    output = panel  # the panel's Output widget is the only place in the panel with clips
    output.locator("img.mg-spectrogram").first.wait_for(state="visible", timeout=timeout_s * 1000)
    assert output.locator("audio").count() >= 1
    src = output.locator("audio").first.get_attribute("src") or ""
    assert src.startswith("data:audio/wav;base64,") and len(src) > 10_000
    assert PROMPT in output.inner_text()
    status = panel.locator(".widget-label", has_text="Done").first
    status.wait_for(timeout=30_000)


def _shoot(page, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def _wait_all_cells_ran(page, n_code_cells: int, timeout_s: float) -> None:
    """Every code cell shows an execution count and none is still queued."""
    page.wait_for_function(
        """(n) => {
            const prompts = [...document.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')]
                .map(p => p.textContent.trim());
            return prompts.length === n && prompts.every(t => /^\\[\\d+\\]:$/.test(t));
        }""",
        arg=n_code_cells,
        timeout=timeout_s * 1000,
    )


def _accept_kernel_dialog(page, timeout_s: float) -> None:
    """JupyterLab may ask which kernel to start: take the one proposed (Python 3)."""
    accept = page.locator(".jp-Dialog .jp-Dialog-button.jp-mod-accept")
    try:
        accept.wait_for(state="visible", timeout=timeout_s * 1000)
    except Exception:  # noqa: BLE001 - no dialog: the kernel started by itself
        return
    accept.click()


def _code_cell_count() -> int:
    import json

    return sum(c["cell_type"] == "code" for c in json.loads(STUDIO.read_text(encoding="utf-8"))["cells"])


def test_studio_in_jupyterlab(browser, lab):
    base, token = lab.split("|")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/lab/tree/notebooks/{STUDIO.name}?token={token}", timeout=120_000)
        page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
        _accept_kernel_dialog(page, 10)
        page.locator(".lm-MenuBar-item", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
        _accept_kernel_dialog(page, 10)
        _wait_all_cells_ran(page, _code_cell_count(), RUN_ALL_S)
        assert "Live model: tiny" in page.locator(".jp-OutputArea-output").first.inner_text()
        page.locator(".mg-studio").first.scroll_into_view_if_needed()
        _generate_in_studio(page, GENERATE_S)
        page.locator(".mg-studio").first.scroll_into_view_if_needed()
        assert _shoot(page, "studio-jupyterlab.png").stat().st_size > 10_000
    except Exception:
        _shoot(page, "studio-jupyterlab-failure.png")
        raise
    finally:
        page.close()


def test_studio_in_voila(browser, voila):
    base, token = voila.split("|")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/?token={token}", timeout=RUN_ALL_S * 1000)
        page.locator(".mg-studio textarea").first.wait_for(timeout=RUN_ALL_S * 1000)
        assert "Live model: tiny" in page.content()
        assert "mg.studio()" not in page.inner_text("body")  # a plain page: outputs only, no code
        _generate_in_studio(page, GENERATE_S)
        assert _shoot(page, "studio-voila.png").stat().st_size > 10_000
    except Exception:
        _shoot(page, "studio-voila-failure.png")
        raise
    finally:
        page.close()
