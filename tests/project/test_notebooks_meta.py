"""The tutorial notebooks stay short stories: stripped, one import, few short cells, no helpers;
each says what it needs and what you will hear, ends with exercises, links on, and is listed
wherever the course is listed (README, docs/notebooks.md, the quickstart's Next links).

(Running them is nbval's job: ``pytest --nbval-lax notebooks`` with ``MGTOOLKIT_MODEL=tiny``.)
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
EXPECTED = [
    "01_quickstart",
    "02_how_latent_diffusion_makes_sound",
    "03_image_to_music",
    "04_audio_to_music",
    "05_listen_like_a_musician",
    "06_longer_music_and_loops",
    "07_studio",
    "08_loop_for_your_daw",
]
STUDIO = "07_studio"
PATHS = sorted(NOTEBOOKS.glob("*.ipynb"))
ZH = NOTEBOOKS / "zh"  # the lessons in Chinese, for AI Studio's users (issue 25)
ZH_PATHS = sorted(ZH.glob("*.ipynb"))
ALL_PATHS = PATHS + ZH_PATHS
MAX_LINES = 10


def _code(path: Path) -> list[str]:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def _markdown(path: Path) -> str:
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")


def test_the_eight_notebooks_are_there_in_course_order():
    assert [p.stem for p in PATHS] == EXPECTED  # 01, 02, ...: the order a class takes them


def test_the_chinese_quickstart_is_there():
    assert [p.stem for p in ZH_PATHS] == ["01_快速开始"]


CHECKED = "# NBVAL_CHECK_OUTPUT"


def _cells(path: Path) -> list[dict]:
    return [c for c in json.loads(path.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: p.stem)
def test_outputs_are_stripped(path):
    """No outputs in git, except the reference text of cells nbval compares (``# NBVAL_CHECK_OUTPUT``)."""
    book = json.loads(path.read_text(encoding="utf-8"))
    for cell in _cells(path):
        if "".join(cell["source"]).startswith(CHECKED):
            continue
        assert cell["outputs"] == [], "".join(cell["source"])[:60]
    assert "widgets" not in book["metadata"]  # no saved widget state either


WITH_CHECKS = [
    "01_quickstart",
    "02_how_latent_diffusion_makes_sound",
    "03_image_to_music",
    "04_audio_to_music",
]
WITH_CHECKS += ["06_longer_music_and_loops"]  # 05 ranks and describes: nothing in it is fixed on noise
WITH_CHECKS += ["08_loop_for_your_daw"]  # the conformed loop's exact length
CHECKED_PATHS = [NOTEBOOKS / f"{stem}.ipynb" for stem in WITH_CHECKS] + ZH_PATHS  # zh: the English sent


@pytest.mark.parametrize("path", CHECKED_PATHS, ids=lambda p: p.stem)
def test_deterministic_cells_are_compared_by_nbval(path):
    """nbval compares only marked cells that hold a reference output and an execution count
    (nbstripout keeps them: ``keep_output`` metadata, and the hook runs with ``--keep-count``)."""
    checked = [c for c in _cells(path) if "".join(c["source"]).startswith(CHECKED)]
    assert checked, f"mark a deterministic cell (e.g. clip.sample_rate, clip.waveform.shape) {CHECKED}"
    for cell in checked:
        assert cell["metadata"].get("keep_output") is True and cell["execution_count"] is not None
        (output,) = cell["outputs"]
        assert set(output["data"]) == {"text/plain"} and output["data"]["text/plain"].strip()


def test_the_image_notebook_uses_the_small_captioner_and_states_the_big_ones_cost():
    path = NOTEBOOKS / "03_image_to_music.ipynb"
    code = "\n".join(_code(path))
    text = _markdown(path)
    main = next(c for c in _code(path) if "story = mg.image_to_music(" in c)
    assert 'writer="template"' in main and "captioner=" not in main  # the default captioner: CLIP, 0.6 GB
    assert "blip2" not in code and "minigpt4" not in code and "qwen2" not in code  # nothing big runs
    assert "0.6 GB" in text and "about 8 GB" in text and "15 GB" in text and "28 GB" in text
    assert "MiniGPT4 + ChatGLM-6B" in text and "twice" in text


def test_the_served_studio_notebook_is_the_studio_alone():
    """Voilà shows every output: no requests printed, no clips, no generation while the page loads."""
    code = _code(NOTEBOOKS / f"{STUDIO}.ipynb")
    assert code[-1].strip() == "mg.studio()" and len(code) == 2
    joined = "\n".join(code)
    assert ".request" not in joined and "mg.show" not in joined and ".run(" not in joined


def test_the_diffusion_notebook_explains_the_step_numbers_and_the_colour_scale():
    text = _markdown(NOTEBOOKS / "02_how_latent_diffusion_makes_sound.ipynb")
    assert "counts from 0" in text and "−80 dB" in text


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: p.stem)
def test_one_import_and_it_comes_first_with_the_model_note(path):
    code = _code(path)
    imports = [line for cell in code for line in cell.splitlines() if re.match(r"\s*(import|from)\s", line)]
    assert imports == ["import mgtoolkit as mg"]
    assert code[0].startswith("import mgtoolkit as mg") and "mg.about()" in code[0]


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: p.stem)
def test_few_short_cells(path):
    code = _code(path)
    fewest = 2 if path.stem == STUDIO else 5  # the served studio: the model note and the studio
    assert fewest <= len(code) <= 8, f"{len(code)} code cells"
    long = [c for c in code if len(c.strip().splitlines()) > MAX_LINES]
    assert not long


@pytest.mark.parametrize("path", ALL_PATHS, ids=lambda p: p.stem)
def test_no_helpers_devices_absolute_paths_or_environment(path):
    source = "\n".join(_code(path))
    assert not re.search(r"^\s*(def|class|lambda)\b", source, re.M), "move helpers into the package"
    assert "device=" not in source and "cuda" not in source.lower()
    assert not re.search(r"""["'](/|[A-Za-z]:\\|~)""", source), "no absolute paths"
    assert "os.environ" not in source and "MGTOOLKIT_MODEL" not in source  # the model comes from outside
    assert "model=" not in source  # real models by default; tests switch to tiny through the environment


# --- what every lesson must say (issue 20) ---------------------------------------------------------------

NEEDS = re.compile(r"\*\*Needs\*\*.*\*\*download:\*\*.+\*\*disk:\*\*.+\*\*memory:\*\*.+\*\*time:\*\*(.+)")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_each_opens_with_what_it_needs_and_points_at_the_measured_table(path):
    first = json.loads(path.read_text(encoding="utf-8"))["cells"][0]
    assert first["cell_type"] == "markdown"
    found = NEEDS.search("".join(first["source"]))
    assert found, "the first cell needs a Needs box: download, disk, memory, time"
    time_text = found.group(1)
    assert "docs/notebooks.md#what-each-notebook-needs" in time_text
    tiny = re.search(r"on `tiny` \(the test model\) about (\d+) s", time_text)
    assert tiny, "the Needs box gives the measured time on tiny, not a placeholder"
    assert "?" not in tiny.group(0)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_each_says_what_you_will_hear_on_tiny_and_on_the_real_model(path):
    text = _markdown(path)
    box = text[text.index("**What you will hear**") :].split("\n\n")[0]
    for words in (
        "`tiny`",
        "noise",
        "16 kHz mono",
        "nothing above 8 kHz",
        "general-audio",
        "loosely",
        "seed",
    ):
        assert words in box, words


def _exercises(path: Path) -> list[str]:
    text = _markdown(path)
    start = text.index("Try this")
    section = text[start:].split("\n## ")[0].split("**Next:**")[0]
    return re.findall(r"(?:^|\s)(\d)\. (.+?)(?=\s\d\. |\Z)", section, re.S)


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_each_has_two_to_four_exercises_with_what_to_listen_for(path):
    exercises = _exercises(path)
    assert 2 <= len(exercises) <= 4, [n for n, _ in exercises]
    assert [int(n) for n, _ in exercises] == list(range(1, len(exercises) + 1))
    assert all("listen for" in body.lower() for _, body in exercises)


LINK = re.compile(r"\]\(([0-9]{2}_[a-z_]+)\.ipynb\)")


@pytest.mark.parametrize("path", PATHS, ids=lambda p: p.stem)
def test_each_links_on_to_notebooks_that_exist(path):
    text = _markdown(path)
    assert "**Next:**" in text
    nexts = LINK.findall(text[text.rindex("**Next:**") :])
    assert nexts and set(nexts) <= set(EXPECTED)
    assert "docs/glossary.md" in text


def test_the_quickstart_links_to_every_other_notebook():
    text = _markdown(NOTEBOOKS / "01_quickstart.ipynb")
    assert set(LINK.findall(text[text.rindex("**Next:**") :])) == set(EXPECTED) - {"01_quickstart"}


@pytest.mark.parametrize("doc", ["README.md", "docs/notebooks.md"])
def test_every_notebook_is_listed_in_the_readme_and_the_notebook_docs(doc):
    text = (ROOT / doc).read_text(encoding="utf-8")
    listed = re.findall(r"notebooks/([0-9]{2}_[a-z_]+)\.ipynb", text)
    assert set(listed) == set(EXPECTED), set(EXPECTED) ^ set(listed)


def test_the_notebook_docs_table_has_a_row_per_notebook_with_its_figures():
    text = (ROOT / "docs/notebooks.md").read_text(encoding="utf-8")
    table = text[text.index("## What each notebook needs") :].split("\n## ")[0]
    rows = [line for line in table.splitlines() if line.startswith("| [0")]
    assert [re.search(r"\[(\d{2}_[a-z_]+)\]", r).group(1) for r in rows] == EXPECTED
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert len(cells) == 7 and all(cells), row  # notebook, download, disk, peak, tiny, laptop, Binder


def test_the_loop_notebook_runs_no_generative_model_as_its_needs_box_says():
    """08 conforms the package's own groove: its cells download nothing; the real model is an exercise."""
    path = NOTEBOOKS / "08_loop_for_your_daw.ipynb"
    code = "\n".join(_code(path))
    for call in ("mg.generate(", "mg.restyle(", "mg.extend(", "image_to_music(", "audio_to_music("):
        assert call not in code, call
    assert "tags=False" in code  # describe_audio without CLAP
    text = _markdown(path)
    assert "**download:** nothing" in text and "mg.generate(" in text.split("Try this")[1]


def test_the_glossary_defines_the_words_the_course_uses():
    text = (ROOT / "docs/glossary.md").read_text(encoding="utf-8")
    terms = re.findall(r"^\*\*(.+?)\*\*", text, re.M)
    wanted = [
        "guidance",
        "latent",
        "mel",
        "vocoder",
        "DDIM",
        "DPM++",
        "strength",
        "CLAP",
        "LUFS",
        "true peak",
        "seam",
        "BPM",
        "bar",
        "downbeat",
        "time-stretch",
        "pitch shift",
        "MIDI",
        "transcription",
    ]
    for word in wanted:
        assert any(word.lower() in term.lower() for term in terms), word


# --- the quickstart in Chinese (issue 25): the same promises, in Chinese ---------------------------------

ZH_QUICKSTART = ZH / "01_快速开始.ipynb"
ZH_NEEDS = re.compile(r"\*\*需要什么\*\*.*\*\*下载：\*\*.+\*\*磁盘：\*\*.+\*\*内存：\*\*.+\*\*时间：\*\*(.+)")


def test_the_chinese_quickstart_opens_with_what_it_needs():
    first = json.loads(ZH_QUICKSTART.read_text(encoding="utf-8"))["cells"][0]
    assert first["cell_type"] == "markdown"
    found = ZH_NEEDS.search("".join(first["source"]))
    assert found, "the first cell needs a 需要什么 box: 下载, 磁盘, 内存, 时间"
    assert "../../docs/notebooks.md#what-each-notebook-needs" in found.group(1)
    assert re.search(r"在 `tiny`（测试模型）上约 \d+ 秒", found.group(1))


def test_the_chinese_quickstart_says_what_you_will_hear():
    text = _markdown(ZH_QUICKSTART)
    box = text[text.index("**你会听到什么**") :].split("\n\n")[0]
    for words in ("`tiny`", "噪声", "16 kHz 单声道", "8 kHz 以上", "通用音频", "大致", "种子"):
        assert words in box, words


def test_the_chinese_quickstart_has_exercises_that_say_what_to_listen_for():
    text = _markdown(ZH_QUICKSTART)
    section = text[text.index("## 试一试") :].split("**下一课：**")[0]
    exercises = re.findall(r"^(\d)\. (.+)$", section, re.M)
    assert 2 <= len(exercises) <= 4 and [int(n) for n, _ in exercises] == list(range(1, len(exercises) + 1))
    assert all("注意听" in body for _, body in exercises)


def test_the_chinese_quickstart_links_on_to_files_that_exist():
    text = _markdown(ZH_QUICKSTART)
    nexts = re.findall(r"\]\((\.\./[^)#]+)\)", text[text.rindex("**下一课：**") :])
    assert {(ZH / link).resolve().name for link in nexts if link.endswith(".ipynb")} == {
        f"{stem}.ipynb" for stem in EXPECTED if stem != "01_quickstart"
    }
    assert all((ZH / link).exists() for link in nexts), nexts
    assert "../../docs/glossary.md" in nexts


def test_the_notebook_docs_have_a_chinese_section_for_ai_studio():
    text = (ROOT / "docs/notebooks.md").read_text(encoding="utf-8")
    section = text[text.index("## 中文") :].split("\n## ")[0]
    assert "notebooks/zh/01_快速开始.ipynb" in section and "AI Studio" in section
    for words in ('translate="qwen2-0.5b"', "translate=False", 'mg.studio(lang="zh")', "拼音"):
        assert words in section, words
