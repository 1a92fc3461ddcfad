"""IPython glue: audio players for clips (placeholder until the notebook studio lands)."""

from __future__ import annotations

import base64
import html

from .audio import wav_bytes


def clip_html(clip) -> str:
    """An ``<audio>`` player and a one-line caption for ``clip`` (no IPython needed)."""
    data = base64.b64encode(wav_bytes(clip.waveform, clip.sample_rate)).decode("ascii")
    caption = html.escape(f"{clip.prompt} · seed {clip.seed} · {clip.duration:.2f} s · "
                          f"{clip.model_info.get('name', '')}")
    return (f'<figure class="mgtoolkit-clip"><audio controls src="data:audio/wav;base64,{data}"></audio>'
            f"<figcaption>{caption}</figcaption></figure>")
