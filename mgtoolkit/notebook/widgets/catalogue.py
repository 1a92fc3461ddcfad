"""Every text the studio shows, in English and Chinese: one table, gettext style.

The English text is the message id (what the panels showed before they spoke Chinese), and
:data:`ZH` gives its Chinese. :func:`tr` looks a text up and fills its ``{placeholders}``; a text
the table lacks is shown in English (the studio's tests walk every widget in ``zh`` to find one).
Core error lines are put into Chinese by :func:`zh_error` from their field, problem and fix
(:data:`ZH_FIELDS`, :data:`ZH_PROBLEMS`); what it does not know is shown in English under a
Chinese prefix, never guessed. Pure data and functions: no widgets here.
"""

from __future__ import annotations

import os
import re
from typing import Any

__all__ = ["LANGS", "resolve_lang", "tr", "ZH", "ZH_FIELDS", "KEYS", "key_label", "zh_error"]

LANGS = ("en", "zh")


def resolve_lang(lang: str | None = None) -> str:
    """``"en"`` or ``"zh"``: ``lang`` as given, else the notebook's locale (``$MGTOOLKIT_LANG``,
    then ``$LC_ALL`` / ``$LANG`` starting with ``zh``), else English.

    Examples
    --------
    >>> resolve_lang("zh_CN.UTF-8"), resolve_lang("en")
    ('zh', 'en')
    """
    if lang is None:
        lang = os.environ.get("MGTOOLKIT_LANG") or os.environ.get("LC_ALL") or os.environ.get("LANG") or "en"
    lang = str(lang).strip().lower().replace("-", "_")
    if lang.startswith("zh"):
        return "zh"
    if lang.startswith(("en", "c", "posix")) or not lang:
        return "en"
    from ...errors import InvalidInputError

    raise InvalidInputError(
        "lang", lang, "is not a language the studio speaks", "pass 'en' or 'zh' (or None)"
    )


def tr(lang: str, text: str, **fields: Any) -> str:
    """``text`` in ``lang`` with its ``{placeholders}`` filled.

    Examples
    --------
    >>> tr("zh", "Denoising: step {step} of {total}", step=3, total=20)
    '去噪：第 3 步，共 20 步'
    """
    shown = ZH.get(text, text) if lang == "zh" else text
    return shown.format(**fields) if fields else shown


KEYS = tuple(
    f"{tonic} {mode}" for mode in ("major", "minor") for tonic in "C C# D Eb E F F# G Ab A Bb B".split()
)
"""The 24 keys the key dropdown offers (names :func:`mgtoolkit.conform` accepts)."""


def key_label(lang: str, key: str) -> str:
    """A key's name shown in ``lang`` (``"A minor"`` → ``"A 小调"``)."""
    tonic, mode = key.split()
    return f"{tonic} {'大调' if mode == 'major' else '小调'}" if lang == "zh" else key


ZH: dict[str, str] = {
    # --- tabs, shared controls
    "Text → music": "文字 → 音乐",
    "Image → music": "图片 → 音乐",
    "Audio → music": "音频 → 音乐",
    "Ready.": "就绪。",
    "Seconds": "时长（秒）",
    "length of the clip in seconds": "片段的长度，单位为秒",
    "Steps": "步数",
    "denoising steps: more is slower and cleaner": "去噪步数：越多越慢，声音越干净",
    "Guidance": "引导强度",
    "how strongly the prompt steers (1: a hint; 2-4 usual)": "提示词的约束力度（1：轻微提示；通常 2-4）",
    "Seed": "种子",
    "the random seed (0 to {max}): the same seed and settings give the same clip": (
        "随机种子（0 到 {max}）：相同的种子和设置得到相同的片段"
    ),
    "random": "随机",
    "draw a new seed for each run (the one used is shown in the Seed box)": (
        "每次生成都抽取新种子（所用的种子显示在“种子”框中）"
    ),
    "Re-roll": "换个种子",
    "draw a new seed and generate again": "抽取新种子并重新生成",
    "Candidates": "候选数",
    "how many clips to make (seeds seed, seed+1, ...)": "生成几段（种子依次为 种子、种子+1……）",
    "Model": "模型",
    "the music model; 'tiny' makes noise quickly, for trying the panel out": (
        "音乐模型；“tiny”很快生成噪声，用于试用面板"
    ),
    # --- file inputs
    "image": "图片",
    "audio": "音频",
    "Upload {what}": "上传{what}",
    "choose a {what} file from your computer": "从你的电脑选择一个{what}文件",
    "Remove upload": "移除上传",
    "forget the uploaded {what} (then the typed path is used)": "丢弃已上传的{what}（之后使用输入的路径）",
    "or a path, e.g. {example}": "或输入路径，例如 {example}",
    "Path": "路径",
    "a {what} file on the server, relative to the notebook's folder": "服务器上的{what}文件，相对于笔记本所在的文件夹",
    "a {what} file inside {folder}, relative to it": "{folder} 中的{what}文件，相对于该文件夹",
    "Using the uploaded file {name} (the typed path is ignored until you remove the upload).": (
        "正在使用上传的文件 {name}（移除上传之前，输入的路径不起作用）。"
    ),
    "Using the uploaded file {name}.": "正在使用上传的文件 {name}。",
    "Using the path {path}.": "正在使用路径 {path}。",
    "No {what} yet: upload one or type a path.": "还没有{what}：请上传一个，或输入路径。",
    "Uploaded file {name}": "上传的文件 {name}",
    "Path {path}": "路径 {path}",
    # --- the panel machinery
    "Generate": "生成",
    "make music from the settings above": "按上面的设置生成音乐",
    "Cancel": "取消",
    "stop at the next denoising step": "在下一个去噪步骤停止",
    "denoising progress": "去噪进度",
    "Busy: the panel is still working on the last request; wait for it, or press Cancel.": (
        "忙碌中：面板仍在处理上一个请求；请稍候，或按“取消”。"
    ),
    "Cancelled: stopped at the next step; nothing was kept.": "已取消：在下一步停止，没有保留任何结果。",
    "Working...": "处理中……",
    "Cancelling at the next step...": "将在下一步取消……",
    "Denoising: step {step} of {total}": "去噪：第 {step} 步，共 {total} 步",
    " Note: {notes}": " 注意：{notes}",
    "Done: 1 clip, seed {seeds}": "完成：1 段，种子 {seeds}",
    "Done: {n} clips, seed {seeds}": "完成：{n} 段，种子 {seeds}",
    ", {seconds} s": "，用时 {seconds} 秒",
    ".": "。",
    "; ": "；",
    "Note (in English): {note}": "提示（英文原文）：{note}",
    "the glossary does not know {words}; they were left out, so the model received {sent}": (
        "词典不认识“{words}”，已略去，模型收到的是 {sent}（可换用常见的音乐词语，或直接写英文）"
    ),
    # --- text panel
    "Loop: the end flows into the start": "循环：结尾无缝接回开头",
    "make a seamless loop (Save writes loop points that samplers and DAWs read)": (
        "生成无缝循环（保存时写入采样器和 DAW 能读取的循环点）"
    ),
    "Prompt": "提示词",
    "e.g. A classic cocktail lounge vibe with smooth jazz piano": "例如：轻松的爵士钢琴，慢节奏",
    "what the music should be": "你想要的音乐",
    "Negative prompt": "反向提示词",
    "e.g. low quality, noise": "例如：低质量，噪音",
    "what to steer away from (optional)": "想要避开的内容（可选）",
    "Extending the clip with seed {seed} by {seconds} s...": "正在把种子为 {seed} 的片段延长 {seconds} 秒……",
    "Filled in from the clip with seed {seed} ({prompt}): change what you like, then press Generate.": (
        "已填入种子为 {seed} 的片段（{prompt}）的设置：按需修改，然后按“生成”。"
    ),
    # --- tempo controls
    "Fit to a grid: tempo, bars, key": "对齐节拍网格：准确速度、整小节、指定调性",
    "stretch and cut the clip to an exact tempo, whole bars and a key (the bars decide its length)": (
        "把片段拉伸并剪切到准确的速度、整数小节和指定调性（长度由小节数决定）"
    ),
    "BPM": "速度 BPM",
    "beats per minute, 40 to 240": "每分钟拍数，40 到 240",
    "Bars": "小节数",
    "how many bars long, 1 to 64": "长度为几小节，1 到 64",
    "Beats per bar": "每小节拍数",
    "beats in a bar (3 for a waltz), 1 to 12": "每小节几拍（华尔兹为 3），1 到 12",
    "Key": "调性",
    "shift to this key, or keep the key it was made in": "移到这个调，或保持生成时的调",
    "keep": "保持原调",
    # --- image panel
    "Generate music": "生成音乐",
    "run the stages still empty, then make the music": "先运行还空着的步骤，再生成音乐",
    "1 · Describe image": "1 · 描述图片",
    "stage 1: the captioner writes what the picture shows": "第 1 步：描述模型写出图片的内容",
    "Caption": "画面描述",
    "what the image shows (edit it if the captioner got it wrong)": "图片的内容（描述不对时可以修改）",
    "stage 1's text: edit it freely": "第 1 步的文字：可随意修改",
    "2 · Write music prompt": "2 · 写音乐提示词",
    "stage 2: the writer turns the caption into a musical prompt": "第 2 步：写作模型把画面描述变成音乐提示词",
    "Music prompt": "音乐提示词",
    "the musical prompt (edit it freely)": "音乐提示词（可随意修改）",
    "stage 2's text: the prompt for the music": "第 2 步的文字：生成音乐用的提示词",
    "Describing the image...": "正在描述图片……",
    "Writing the musical prompt...": "正在写音乐提示词……",
    "Caption ready: edit it if needed, then press 2 · Write music prompt.": (
        "画面描述已完成：需要时修改，然后按“2 · 写音乐提示词”。"
    ),
    "Music prompt ready: edit it if needed, then press Generate music.": (
        "音乐提示词已完成：需要时修改，然后按“生成音乐”。"
    ),
    "is not a picture this panel can read": "不是本面板能读取的图片",
    "{file} is ready: press 1 · Describe image (or Generate music).": (
        "{file} 已就绪：请按“1 · 描述图片”（或“生成音乐”）。"
    ),
    # --- audio panel
    "Restyle": "改变风格",
    "move the clip's sound towards the prompt": "让片段的声音朝提示词的方向变化",
    "1 · Describe clip": "1 · 分析片段",
    "stage 1: tempo, key, loudness and tags of the clip (runs by itself on upload)": (
        "第 1 步：片段的速度、调性、响度和标签（上传后自动运行）"
    ),
    "stage 2 (optional): the writer turns the description into a musical prompt": (
        "第 2 步（可选）：写作模型把分析结果变成音乐提示词"
    ),
    "Strength": "变化强度",
    "0.05: keep almost all of the original; 1: keep only its length and follow the prompt": (
        "0.05：几乎保留原样；1：只保留长度，完全按提示词生成"
    ),
    "what it should become, e.g. lo-fi hip hop with vinyl crackle": "想变成什么，例如：带黑胶噪声的低保真嘻哈",
    "what the clip should become (starts from what the clip sounds like)": "片段应变成的样子（初始内容来自片段本身的听感）",
    "New music": "全新音乐",
    "make a fresh clip of the same length from the prompt alone (the strength is not used)": (
        "只按提示词生成同样长度的新片段（不使用变化强度）"
    ),
    "New music: step {step} of {total}": "全新音乐：第 {step} 步，共 {total} 步",
    "Restyling: step {step} of {total} (strength {strength} × {steps} steps: the first steps are skipped "
    "to keep the original's shape)": "改变风格：第 {step} 步，共 {total} 步（强度 {strength} × {steps} 步：跳过前面的步骤以保留原曲轮廓）",
    "Listening: tempo, key, loudness and tags...": "正在聆听：速度、调性、响度和标签……",
    "Writing a musical prompt from the description...": "正在根据分析结果写音乐提示词……",
    "The clip changed while it was being described: press 1 · Describe clip.": (
        "分析期间片段已更换：请按“1 · 分析片段”。"
    ),
    " (no tags: see the note)": "（没有标签：见提示）",
    "Heard:": "听到：",
    "Described: the prompt starts from it; edit it, then press Restyle or New music.": (
        "分析完成：提示词以此为起点；修改后按“改变风格”或“全新音乐”。"
    ),
    "Music prompt ready: edit it if needed, then press Restyle or New music.": (
        "音乐提示词已完成：需要时修改，然后按“改变风格”或“全新音乐”。"
    ),
    "is not an audio file this panel can read": "不是本面板能读取的音频文件",
    "holds no sound": "没有声音",
    "{file} is ready: listening to it...": "{file} 已就绪：正在聆听……",
    "original: {name}": "原始音频：{name}",
    "changed while it was being described": "在分析期间被更换了",
    "press 1 · Describe clip, then try again": "请按“1 · 分析片段”，然后重试",
    # --- gallery
    "Save to": "保存到",
    "a folder inside {root}": "{root} 中的文件夹",
    "History: 1 clip made in this kernel": "历史：本内核已生成 1 段",
    "History: {n} clips made in this kernel": "历史：本内核已生成 {n} 段",
    "{prompt}, seed {seed}": "“{prompt}”（种子 {seed}）",
    "Save": "保存",
    "save the clip {what} in the format picked above, with its JSON sidecar": "按上面选的格式保存片段 {what}，附带 JSON 说明文件",
    "Use these settings": "沿用这些设置",
    "put the prompt and settings of {what} into the Text → music tab": "把 {what} 的提示词和设置填入“文字 → 音乐”标签页",
    "Extend +10 s": "延长 10 秒",
    "continue {what} by 10 s in the Text → music tab (the clip itself stays as it is)": (
        "在“文字 → 音乐”标签页把 {what} 续写 10 秒（原片段保持不变）"
    ),
    "is outside the folder this studio may write to ({root})": "不在本工作室可写入的文件夹（{root}）之内",
    "type a folder inside it, e.g. outputs": "请输入其中的文件夹，例如 outputs",
    "already saved as {path}": "已保存为 {path}",
    "saved {path}": "已保存 {path}",
    "download": "下载",
    "Save to {typed}: {problem}; {fix}.": "保存到 {typed}：{problem}；{fix}。",
    "Extending in the <b>Text → music</b> tab above (now selected); the result joins this list.": (
        "正在上方的<b>文字 → 音乐</b>标签页（已切换）中延长；结果会加入此列表。"
    ),
    "Settings put into the <b>Text → music</b> tab above (now selected).": (
        "设置已填入上方的<b>文字 → 音乐</b>标签页（已切换）。"
    ),
    "Format": "格式",
    "WAV, 16-bit": "WAV，16 位",
    "FLAC, 24-bit": "FLAC，24 位",
    "Ogg Vorbis": "Ogg Vorbis 格式",
    "MP3": "MP3 格式",
    "file format Save writes": "保存时写入的文件格式",
    "Rate": "采样率",
    "model's rate": "模型原采样率",
    "44.1 kHz": "44.1 千赫",
    "48 kHz": "48 千赫",
    "sample rate Save writes (resampled with soxr for a DAW session)": "保存时的采样率（用 soxr 重采样，便于 DAW 工程）",
    "Loudness": "响度",
    "level as made": "保持生成时的电平",
    "-14 LUFS (streaming)": "-14 LUFS（流媒体）",
    "-16 LUFS (podcasts)": "-16 LUFS（播客）",
    "-23 LUFS (broadcast)": "-23 LUFS（广播）",
    "normalise the integrated loudness, never above -1 dBTP true peak": "统一整体响度，真峰值不超过 -1 dBTP",
    "MIDI too": "同时导出 MIDI",
    "also write the clip's notes as a MIDI file beside the audio (needs the midi extra)": (
        "同时把片段的音符写成 MIDI 文件，放在音频旁边（需要安装 midi 扩展）"
    ),
    "notes {path}": "音符 {path}",
    # --- clip cards and the history's parameters
    "prompt": "提示词",
    "negative": "反向提示词",
    "the model received": "模型收到",
    "not understood, left out": "未能理解、已略去",
    "restyled": "改变风格",
    "strength {strength}": "强度 {strength}",
    "seed {seed}": "种子 {seed}",
    "{seconds} s": "{seconds} 秒",
    "{steps} steps": "{steps} 步",
    "guidance {guidance}": "引导 {guidance}",
    "model {model}": "模型 {model}",
    "score {score}": "得分 {score}",
    "best": "最佳",
    "waveform and mel spectrogram": "波形和梅尔频谱图",
    "about {bpm} BPM": "约 {bpm} BPM",
    "no clear beat": "没有清晰的节拍",
    "no clear key": "没有清晰的调性",
    "grid: {bpm} BPM, {bars} bars of {beats}": "网格：{bpm} BPM，{bars} 小节，每小节 {beats} 拍",
    "key {key}": "调性 {key}",
    "key kept": "保持原调",
    # --- messages about errors
    "Seed: {value} must be a whole number from 0 to {max}; type one, or tick random for a new seed each time.": (
        "种子：{value} 须是 0 到 {max} 之间的整数；请输入一个，或勾选“随机”每次抽取新种子。"
    ),
    "upload a PNG, JPEG or WebP picture, or remove the upload and type the path of one": (
        "请上传 PNG、JPEG 或 WebP 图片，或移除上传后输入图片路径"
    ),
    "upload a WAV, FLAC, OGG or MP3 file (at least 0.5 s), or remove the upload and type a path": (
        "请上传 WAV、FLAC、OGG 或 MP3 文件（至少 0.5 秒），或移除上传后输入路径"
    ),
    "upload a PNG, JPEG or WebP picture": "请上传 PNG、JPEG 或 WebP 图片",
    "upload a WAV, FLAC, OGG or MP3 file (at least 0.5 s)": "请上传 WAV、FLAC、OGG 或 MP3 文件（至少 0.5 秒）",
    "{file}: {problem}; {fix}.": "{file}：{problem}；{fix}。",
    "music model": "音乐模型",
    "captioner (stage 1)": "描述模型（第 1 步）",
    "writer (stage 2)": "写作模型（第 2 步）",
    "The {role} {shown} is not on this machine and cannot be downloaded from here. {try_tiny}, or ask "
    "the notebook's author to download it first (python -m mgtoolkit fetch {name}).": (
        "{role} {shown} 不在本机，也无法从这里下载。{try_tiny}，或请笔记本作者先下载它"
        "（python -m mgtoolkit fetch {name}）。"
    ),
    "Choose 'tiny' in the Model list to try the panel (its clips are noise by design)": (
        "在“模型”列表中选择“tiny”试用面板（它生成的片段本来就是噪声）"
    ),
    "Type your own description into the Caption box and press 2 · Write music prompt": (
        "在“画面描述”框中自己写描述，然后按“2 · 写音乐提示词”"
    ),
    "Type the musical prompt yourself into the Music prompt box and press Generate music": (
        "在“音乐提示词”框中自己写提示词，然后按“生成音乐”"
    ),
    "A model's weights are not on this machine and cannot be downloaded from here: choose 'tiny' in "
    "the Model list to try the panel, or ask the notebook's author. ({line})": (
        "模型权重不在本机，也无法从这里下载：请在“模型”列表中选择“tiny”试用面板，或询问笔记本作者。"
        "（英文原文：{line}）"
    ),
    "Writing notes as MIDI needs the midi extra, which this install lacks: {line}": (
        "导出 MIDI 音符需要 midi 扩展，当前安装中没有：{line}"
    ),
    "Something went wrong (in English): {line}": "出错了（英文原文）：{line}",
}
"""Chinese for every English text the studio shows (message id → translation)."""

ZH_FIELDS = {
    "prompt": "提示词",
    "negative_prompt": "反向提示词",
    "audio_length_in_s": "时长",
    "num_inference_steps": "步数",
    "guidance_scale": "引导强度",
    "num_waveforms_per_prompt": "候选数",
    "strength": "变化强度",
    "model": "模型",
    "caption": "画面描述",
    "music_prompt": "音乐提示词",
    "seed": "种子",
    "bpm": "速度 BPM",
    "bars": "小节数",
    "beats_per_bar": "每小节拍数",
    "key": "调性",
    "image": "图片",
    "audio": "音频",
    "Save to": "保存到",
    "out_dir": "保存到",
    "translate": "翻译",
    "lang": "语言",
}
"""The panel's name of each field a core error can name."""

ZH_PROBLEMS: tuple[tuple[str, str, str | None], ...] = (
    # (pattern of the core's problem, Chinese problem, Chinese fix or None: the panel's own fix follows)
    (
        r"^is empty|^has no words?\b",
        "是空的，或只有标点和表情",
        "请用文字描述音乐，例如：轻松的爵士钢琴，慢节奏",
    ),
    (
        r"^has no word the glossary knows",
        "里没有词典认识的词",
        "请换用常见的音乐词语（曲风、乐器、情绪、速度），或直接写英文",
    ),
    (r"^must be a number from (?P<a>\S+) to (?P<b>\S+)", "须是 {a} 到 {b} 之间的数", "请在滑块范围内选择"),
    (
        r"^must be a whole number from (?P<a>\S+) to (?P<b>\S+)",
        "须是 {a} 到 {b} 之间的整数",
        "请在滑块范围内选择",
    ),
    (r"^must be (at least|between)", "超出了允许的范围", "请在滑块范围内选择"),
    (
        r"^is (?P<s>\S+) s at (?P<bpm>\S+) BPM, above this app's limit of (?P<a>\S+) s",
        "在 {bpm} BPM 下长 {s} 秒，超过了本应用的上限 {a} 秒",
        "请减少小节数或加快速度",
    ),
    (r"^is above this app's limit of (?P<a>.+)$", "超过了本应用的上限 {a}", "请选小一些的值"),
    (r"^is not a number", "不是数字", "请使用滑块"),
    (r"^is not offered by this app", "本应用不提供", "请从“模型”列表中选择"),
    (r"^characters are more than this app's (?P<a>\d+)", "个字符，超过了本应用的上限 {a} 个", "请缩短"),
    (r"^is not a file this app can read", "不是本应用能读取的文件", "请输入应用文件夹中文件的路径"),
    (r"^is larger than this app's limit of (?P<a>.+)$", "超过了本应用的大小上限 {a}", "请换一个小一些的文件"),
    (
        r"^has no clear pulse",
        "听不出清晰的节拍，无法确定要拉伸的速度",
        "请换一个种子或模型再试，或取消勾选“对齐节拍网格”",
    ),
    (
        r"^measures .* afterwards",
        "拉伸后的节拍不够稳定，无法保持这个速度",
        "请换一个种子或模型再试，或取消勾选“对齐节拍网格”",
    ),
    (r"^would stretch", "需要的拉伸比例超出合理范围", "请换一个接近片段原速度的 BPM，或换一个种子"),
    (r"^changed while it was being described", "在分析期间被更换了", "请按“1 · 分析片段”，然后重试"),
    (r"^needs a tempo", "需要先设定速度", "请同时设定速度 BPM"),
    (r"^is not a key name", "不是可识别的调名", "请从“调性”列表中选择"),
    (r"^contradicts bars", "与小节数决定的长度矛盾", "勾选“对齐节拍网格”时长度由小节数决定"),
)
"""Core problems the panel can say in Chinese; anything else is shown in English under a prefix."""


_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")


def _value(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 60 else shown[:57] + "..."


def zh_error(exc: Any, *, named: str | None = None, fix: str | None = None) -> str | None:
    """A Chinese line for an :class:`~mgtoolkit.errors.InvalidInputError`, or ``None`` when the
    field or the problem is not one this catalogue knows (the caller then shows the English line
    under a Chinese prefix). ``named``: how to name the field (an uploaded file by its name);
    ``fix``: the panel's own Chinese fix, used when the problem has none.

    Examples
    --------
    >>> from mgtoolkit.errors import InvalidInputError
    >>> zh_error(InvalidInputError("bpm", 300, "must be a number from 40 to 240", "pass e.g. bpm=120"))
    '速度 BPM：300 须是 40 到 240 之间的数；请在滑块范围内选择。'
    """
    field = named or ZH_FIELDS.get(getattr(exc, "field", ""))
    problem = str(getattr(exc, "problem", ""))
    if field is None:
        return None
    if _CJK.search(problem):  # the core already said it in Chinese (a Chinese prompt's own error)
        value = (
            "" if named or exc.value in ("", None) or _CJK.search(str(exc.value)) else f"{_value(exc.value)} "
        )
        return f"{field}：{value}{problem.rstrip('。')}；{fix or str(exc.fix).rstrip('.。')}。"
    for pattern, said, own_fix in ZH_PROBLEMS:
        found = re.search(pattern, problem)
        if found is None:
            continue
        described = named or exc.field in ("audio", "image")  # the core describes files in English
        value = "" if described or exc.value in ("", None) else f"{_value(exc.value)} "
        how = fix or own_fix
        if how is None:
            return None
        return f"{field}：{value}{said.format(**found.groupdict())}；{how}。"
    return None
