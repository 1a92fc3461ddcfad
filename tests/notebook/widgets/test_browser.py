"""A real browser drives the studio: JupyterLab and Voilà, Chromium through Playwright, tiny model.

JupyterLab starts on 127.0.0.1 with a token and fresh temporary root, config, data and runtime
folders; the studio notebook is copied there (so the repository's copy never gets outputs).
Chromium (Debian's, through ``executable_path``: Playwright cannot download browsers here) opens
it, runs all cells, types a prompt into the text panel, sets 3 s, presses Generate and checks the
status line ("Done: ..."), a card whose caption names the prompt and settings, and a player whose
duration (as the browser's audio element reports it) is exactly the 3 s asked for; the history row
says the same. The same is done with ``voila`` serving the notebook as a plain web page, which must
show the studio alone (no code, requests or clips) with every tab usable at 1400 and 390 px (no cut
buttons or labels) and no "null" tooltips; screenshots of each tab go to ``test-artifacts/``.
Voilà serves it once more to a kernel whose locale is Chinese (``MGTOOLKIT_LANG=zh``): every line
of the studio's text and every placeholder, title and aria-label must hold Chinese (or be a number,
unit, model id or key name), screenshots of each tab go to ``test-artifacts/studio-zh-*.png``, and a
Chinese prompt generates a clip whose card shows the English words the model received.

Run with ``MGTOOLKIT_MODEL=tiny pytest -m browser tests/notebook/widgets/test_browser.py``.
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

ROOT = Path(__file__).resolve().parents[3]
ARTIFACTS = ROOT / "test-artifacts"
STUDIO = ROOT / "notebooks" / "07_studio.ipynb"
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


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
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


def _server(cmd: list[str], workdir: Path, ready_path: str, name: str, **env: str) -> Iterator[str]:
    pytest.importorskip(name.split("-")[0], reason=f"{name} is not installed")
    port, token = _free_port(), secrets.token_hex(16)
    base = f"http://127.0.0.1:{port}"
    cmd = [part.format(port=port, token=token, root=workdir / "root") for part in cmd]
    proc = _start(cmd, workdir / "root", _env(workdir, **env), workdir / f"{name}.log")
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


def _voila_cmd() -> list[str]:
    return [
        sys.executable,
        "-m",
        "voila",
        f"notebooks/{STUDIO.name}",
        "--no-browser",
        "--Voila.ip=127.0.0.1",
        "--port={port}",
        "--token={token}",
    ]


@pytest.fixture()
def voila(workdir: Path) -> Iterator[str]:
    yield from _server(_voila_cmd(), workdir, "/", "voila")


@pytest.fixture()
def voila_zh(workdir: Path) -> Iterator[str]:
    """Voilà whose kernel's locale is Chinese: ``mg.studio()`` speaks Chinese by itself."""
    yield from _server(_voila_cmd(), workdir, "/", "voila", MGTOOLKIT_LANG="zh", LANG="zh_CN.UTF-8")


ONE_SAMPLE = 1 / 16000  # the tiny model's rate: a clip one sample short must fail
SECONDS = 3  # typed into the Seconds slider's box; the player must say 3 s (once it said 0:02)
TABS = {"text": "Text → music", "image": "Image → music", "audio": "Audio → music"}


def _set_slider(panel, label: str, value: float) -> None:
    """Type ``value`` into the readout box of the slider labelled ``label`` (as a user can)."""
    slider = panel.locator(".widget-slider", has=panel.page.locator("label", has_text=label)).first
    readout = slider.locator(".widget-readout").first
    readout.click()
    readout.press("Control+A")
    readout.type(str(value))
    readout.press("Enter")


def _player_duration(page, audio) -> float:
    """The duration the browser's own audio element reports (after its metadata loaded)."""
    handle = audio.element_handle()
    page.wait_for_function("(a) => a.readyState >= 1 && isFinite(a.duration)", arg=handle, timeout=30_000)
    return float(page.evaluate("(a) => a.duration", handle))


def _generate_in_studio(page, timeout_s: float) -> None:
    """Type a prompt, set 3 s, press Generate; check what the page shows: the status, the card's
    caption, a player of the right duration, the history row."""
    studio = page.locator(".mg-studio").first
    panel = studio.locator(".mg-panel").first
    prompt = panel.locator("textarea").first
    prompt.fill(PROMPT)
    prompt.press("Tab")  # blur: the widget syncs its value
    _set_slider(panel, "Seconds", SECONDS)
    panel.locator("button", has_text=re.compile(r"^\s*Generate\s*$")).first.click()
    status = panel.locator(".mg-status-text").first
    expect = _expect()
    expect(status).to_have_text(re.compile(r"^Done: 1 clip, seed \d+"), timeout=timeout_s * 1000)
    assert status.get_attribute("role") == "status" and status.get_attribute("aria-live") == "polite"
    card = panel.locator(".mg-card").first
    expect(card.locator("img.mg-spectrogram")).to_be_visible()
    caption = card.locator(".mg-meta").inner_text()
    assert PROMPT in caption and re.search(
        r"seed \d+ · 3\.00 s · 20 steps · guidance 2\.5 · model tiny", caption
    ), caption
    assert _player_duration(page, card.locator("audio").first) == pytest.approx(SECONDS, abs=ONE_SAMPLE / 4)
    assert card.locator("audio").first.get_attribute("aria-label")
    row = studio.locator(".mg-gallery").first
    expect(row).to_contain_text("History: 1 clip made in this kernel")
    expect(row).to_contain_text("audio_length_in_s=3,")  # not 2.9999999999999996
    assert _player_duration(page, row.locator("audio").first) == pytest.approx(SECONDS, abs=ONE_SAMPLE / 4)


def _expect():
    from playwright.sync_api import expect

    return expect


def _no_null_tooltips_and_a_focus_ring(page) -> None:
    studio = page.locator(".mg-studio").first
    nulls = studio.locator('[title="null"]')
    assert nulls.count() == 0, [
        nulls.nth(i).evaluate("e => e.outerHTML.slice(0, 160)") for i in range(nulls.count())
    ]
    unnamed = page.evaluate(
        """(studio) => [...studio.querySelectorAll('input, textarea, select, audio')]
            .filter(e => e.offsetParent !== null && e.type !== 'file')
            .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label')
                         && !e.getAttribute('aria-labelledby') && !e.getAttribute('title'))
            .map(e => e.outerHTML.slice(0, 100))""",
        studio.element_handle(),
    )
    assert not unnamed, f"controls without an accessible name: {unnamed}"
    # (ipywidgets' slider handles, noUiSlider divs, carry no name: nothing a kernel can set)
    generate = studio.locator(".mg-panel button.mod-primary").first
    generate.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # keyboard focus: :focus-visible applies
    width = page.evaluate("(b) => parseFloat(getComputedStyle(b).outlineWidth)", generate.element_handle())
    assert width >= 3, f"focus ring {width}px"


def _shoot_tabs(page, width: int, tabs: dict[str, str] = TABS, prefix: str = "studio") -> list[Path]:
    """Each studio tab at ``width`` px: a screenshot, and no button or label cut or off-screen."""
    page.set_viewport_size({"width": width, "height": 1000})
    studio = page.locator(".mg-studio").first
    shots = []
    for key, title in tabs.items():
        studio.locator(".lm-TabBar-tab", has_text=title).first.click()
        panel = studio.locator(".mg-panel:visible").first
        panel.wait_for(state="visible")
        cut = page.evaluate(
            """(panel) => [...panel.querySelectorAll('button, .widget-label, label')]
                .filter(e => e.offsetParent !== null && e.getBoundingClientRect().width > 0)
                .filter(e => e.scrollWidth > e.clientWidth + 1
                             || e.getBoundingClientRect().right > window.innerWidth + 1)
                .map(e => e.textContent.trim() || e.outerHTML.slice(0, 60))""",
            panel.element_handle(),
        )
        assert not cut, f"{title} at {width}px cuts {cut}"
        ARTIFACTS.mkdir(exist_ok=True)
        path = ARTIFACTS / f"{prefix}-{key}-{width}.png"
        page.screenshot(path=str(path), full_page=True)
        shots.append(path)
    studio.locator(".lm-TabBar-tab", has_text=tabs["text"]).first.click()
    return shots


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
        _no_null_tooltips_and_a_focus_ring(page)
        _generate_in_studio(page, GENERATE_S)
        page.locator(".mg-studio").first.scroll_into_view_if_needed()
        _shoot(page, "studio-jupyterlab.png")
    except Exception:
        _shoot(page, "studio-jupyterlab-failure.png")
        raise
    finally:
        page.close()


def _the_studio_alone(page) -> None:
    """The served page is the model note and the studio: no code, no requests, no clips, no text for developers."""
    body = page.inner_text("body")
    assert "Live model: tiny" in body and page.locator(".mg-studio").count() == 1
    for developer_text in ("mg.studio()", "GenerationRequest(", "how the tests drive", "import mgtoolkit"):
        assert developer_text not in body
    assert page.locator("audio").count() == 0  # nothing was generated while the page loaded
    assert page.locator(".mg-gallery").first.inner_text().count("History: 0 clips") == 1
    assert not page.get_by_text("Save to").is_visible()  # a visitor cannot choose folders on the server


def test_studio_in_voila(browser, voila):
    base, token = voila.split("|")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/?token={token}", timeout=RUN_ALL_S * 1000)
        page.locator(".mg-studio textarea").first.wait_for(timeout=RUN_ALL_S * 1000)
        _the_studio_alone(page)
        _no_null_tooltips_and_a_focus_ring(page)
        _shoot_tabs(page, 1400)
        _shoot_tabs(page, 390)
        page.set_viewport_size({"width": 1400, "height": 1000})
        _generate_in_studio(page, GENERATE_S)
        assert page.locator("audio").count() == page.locator(".mg-studio audio").count()  # no clip outside
        _shoot(page, "studio-voila.png")
    except Exception:
        _shoot(page, "studio-voila-failure.png")
        raise
    finally:
        page.close()


TABS_ZH = {"text": "文字 → 音乐", "image": "图片 → 音乐", "audio": "音频 → 音乐"}
PROMPT_ZH = "轻松的爵士钢琴，慢节奏"
CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff\u3000-\u303f\uff00-\uffef]")
NEUTRAL = re.compile(r"^[\d\s.,:;·#()+\-–−×/%'\"=→…]*((s|kHz|Hz|LUFS|dBTP|BPM|MB)[\d\s.,:;·()]*)*$")
"""Numbers, units and punctuation: the same in every language."""


def _english_in(texts: list[str], allowed: set[str]) -> list[str]:
    """The texts with no Chinese that are not numbers, units, model ids or ``allowed``."""
    return [
        t.strip()
        for t in texts
        if t.strip() and not CJK.search(t) and t.strip() not in allowed and not NEUTRAL.match(t.strip())
    ]


def _studio_texts(page) -> tuple[list[str], list[str]]:
    """The studio's lines of text (every tab's), and its placeholders, titles and aria-labels."""
    studio = page.locator(".mg-studio").first
    lines = page.evaluate(
        """(studio) => [...studio.querySelectorAll('*')]
            .filter(e => !['STYLE', 'SCRIPT'].includes(e.tagName))
            .flatMap(e => [...e.childNodes].filter(n => n.nodeType === 3).map(n => n.textContent))""",
        studio.element_handle(),
    )
    names = page.evaluate(
        """(studio) => [...studio.querySelectorAll('[placeholder], [title], [aria-label]')]
            .flatMap(e => ['placeholder', 'title', 'aria-label'].map(a => e.getAttribute(a)))
            .filter(v => v !== null && v.trim() !== '' && v !== '\u200b')""",
        studio.element_handle(),
    )
    return [line for line in lines if line.strip("\u200b \n")], names


def test_studio_in_chinese_in_voila(browser, voila_zh):
    """The notebook's locale is Chinese: no English label anywhere in the studio, a Chinese prompt
    makes a clip whose card shows the words the model received; screenshots of every tab."""
    from mgtoolkit.models.registry import PRESETS

    allowed = {*PRESETS, "tiny", "Ogg Vorbis", "MP3", "×", "120", "4"}
    base, token = voila_zh.split("|")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        page.goto(f"{base}/?token={token}", timeout=RUN_ALL_S * 1000)
        page.locator(".mg-studio textarea").first.wait_for(timeout=RUN_ALL_S * 1000)
        for title in TABS_ZH.values():  # every tab's controls rendered before the text check
            page.locator(".mg-studio .lm-TabBar-tab", has_text=title).first.click()
        lines, names = _studio_texts(page)
        assert "生成" in " ".join(lines) and "提示词" in " ".join(lines), lines[:40]
        assert not _english_in(lines, allowed), _english_in(lines, allowed)
        assert not _english_in(names, allowed), _english_in(names, allowed)
        _no_null_tooltips_and_a_focus_ring(page)
        page.locator(".mg-studio .lm-TabBar-tab", has_text=TABS_ZH["text"]).first.click()
        panel = page.locator(".mg-studio .mg-panel").first
        grid = panel.locator("label", has_text="对齐节拍网格").first
        grid.click()  # the tempo controls, shown in the screenshots and checked for cut labels
        _expect()(panel.locator("label", has_text="速度 BPM").first).to_be_visible()
        _shoot_tabs(page, 1400, TABS_ZH, "studio-zh")
        _shoot_tabs(page, 390, TABS_ZH, "studio-zh")
        page.set_viewport_size({"width": 1400, "height": 1000})
        grid.click()
        prompt = panel.locator("textarea").first
        prompt.fill(PROMPT_ZH)
        prompt.press("Tab")
        panel.locator("button", has_text=re.compile(r"^\s*生成\s*$")).first.click()
        expect = _expect()
        status = panel.locator(".mg-status-text").first
        expect(status).to_have_text(re.compile(r"^完成：1 段，种子 \d+"), timeout=GENERATE_S * 1000)
        card = panel.locator(".mg-card").first
        meta = card.locator(".mg-meta").inner_text()
        assert PROMPT_ZH in meta and "relaxed jazz piano, slow tempo" in meta and "模型收到" in meta, meta
        lines, names = _studio_texts(page)
        data = {PROMPT_ZH, "relaxed jazz piano, slow tempo", "'relaxed jazz piano, slow tempo'"}
        assert not _english_in(lines, allowed | data), _english_in(lines, allowed | data)
        _shoot(page, "studio-zh-voila.png")
    except Exception:
        _shoot(page, "studio-zh-voila-failure.png")
        raise
    finally:
        page.close()
