"""The three panels (text, image, audio to music), one module each, over the machinery they share
(:mod:`.panel_base`: Generate/Cancel, progress, status, a worker thread, and the one place an
exception is caught and shown)."""

from __future__ import annotations

from .audio_panel import AudioPanel
from .image_panel import ImagePanel
from .text_panel import TextPanel

__all__ = ["TextPanel", "ImagePanel", "AudioPanel"]
