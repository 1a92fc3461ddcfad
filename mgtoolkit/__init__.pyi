"""Types of mgtoolkit's public names; the package loads most of them on first use (``_LAZY``).

``tests/test_plan.py`` keeps this stub and ``mgtoolkit/__init__.py`` listing the same names.
"""

# ruff: noqa: I001  (grouped as in __init__.py: eager names, _LAZY, _SUBMODULES)

from .errors import GenerationCancelled as GenerationCancelled
from .errors import InvalidInputError as InvalidInputError
from .errors import MgtoolkitError as MgtoolkitError
from .errors import ModelUnavailableError as ModelUnavailableError
from .models.loading import load_model as load_model
from .models.loading import unload as unload
from .models.registry import PRESETS as PRESETS
from .models.registry import resolve_model as resolve_model
from .tasks.text import validate_request as validate_request
from .types import Clip as Clip
from .types import GenerationRequest as GenerationRequest

# the lazily loaded names (mgtoolkit._LAZY)
from .api import generate as generate
from .api import image_to_music as image_to_music
from .api import audio_to_music as audio_to_music
from .api import restyle as restyle
from .api import extend as extend
from .api import variations as variations
from .tasks.image import describe_image as describe_image
from .tasks.image import write_music_prompt as write_music_prompt
from .tasks.image import Story as Story
from .tasks.image import CAPTIONERS as CAPTIONERS
from .tasks.image import WRITERS as WRITERS
from .tasks.image import WriterFallbackWarning as WriterFallbackWarning
from .analysis.describe import describe_audio as describe_audio
from .analysis.describe import AudioDescription as AudioDescription
from .models.audioldm import SCHEDULERS as SCHEDULERS
from .models.audioldm import PromptTruncatedWarning as PromptTruncatedWarning
from .accel import optimize as optimize
from .io.images import example_image as example_image
from .notebook.display import show as show
from .notebook.teaching import show_denoising as show_denoising
from .notebook.display import about as about
from .notebook.plots import waveshow as waveshow
from .notebook.plots import melshow as melshow
from .notebook.plots import clip_figure as clip_figure
from .notebook.teaching import denoising_snapshots as denoising_snapshots
from .notebook.widgets import studio as studio
from .notebook.widgets import TextPanel as TextPanel
from .notebook.widgets import ImagePanel as ImagePanel
from .notebook.widgets import AudioPanel as AudioPanel
from .batching import batch as batch
from .tasks.image_tags import tag_image as tag_image
from .tasks.image_tags import ImageTags as ImageTags
from .analysis.conform import conform as conform
from .analysis.conform import click_along as click_along
from .analysis.synth import example_loop as example_loop
from .io.midi import transcribe as transcribe

# submodules reachable as attributes (mgtoolkit._SUBMODULES)
from . import appflow as appflow
from . import accel as accel
from . import config as config
from . import tasks as tasks
from . import models as models
from .io import audio as audio
from .io import images as images
from . import prompts as prompts
from .notebook import display as display
from .notebook import plots as plots
from .notebook import teaching as teaching
from .notebook import widgets as widgets
from .notebook import history as history

__version__: str
__all__: list[str]
