"""Zero-shot tags of a picture from editable lists: the ``clip`` captioner with its scores.

>>> import mgtoolkit as mg
>>> tags = mg.tag_image(mg.example_image(), {"mood": ["calm", "energetic"]})  # doctest: +SKIP
>>> tags.caption, tags.tags["mood"]                                            # doctest: +SKIP

The model code and the default lists are :mod:`mgtoolkit.models.clip_tagger`;
:func:`mgtoolkit.describe_image` gives the same caption as text for the image chain.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidInputError
from ..models.clip_tagger import (
    DEFAULT_LABELS,
    TOP_K,
    ImageTags,
    caption_from_tags,
    check_labels,
    score_labels,
)

__all__ = ["tag_image", "ImageTags", "DEFAULT_LABELS"]


def tag_image(
    image: Any,
    labels: Mapping[str, Sequence[str]] | None = None,
    *,
    captioner: str | os.PathLike | None = None,
    device: str | None = None,
    top_k: int | None = TOP_K,
    keep_loaded: bool = False,
) -> ImageTags:
    """Zero-shot tags of ``image`` from editable label lists, and the caption they make.

    Parameters
    ----------
    image : str, Path, bytes, PIL.Image.Image or numpy.ndarray
        The picture (any mode or size; see :func:`mgtoolkit.images.load_image`).
    labels : mapping of str to list of str, optional
        ``{category: [label, ...]}``; ``None`` is
        :data:`mgtoolkit.models.clip_tagger.DEFAULT_LABELS` (scene, mood, colour, time of day, energy).
    captioner : str, optional
        ``"clip"`` (``openai/clip-vit-base-patch32``, about 0.6 GB), ``"tiny-clip"``, or a CLIP
        folder. ``None``: ``"tiny-clip"`` when the music model is tiny, else ``"clip"``.
    device : str, optional
        ``"cpu"``, ``"gpu"`` or ``None`` for automatic.
    top_k : int or None
        Labels kept per category (``None``: all of them).
    keep_loaded : bool
        Keep CLIP in memory for the next call (else it is released at once).

    Returns
    -------
    ImageTags
        ``.tags`` with their probabilities, ``.caption``, ``.model``.

    Raises
    ------
    InvalidInputError
        One line naming ``labels``, ``top_k``, ``image`` or ``captioner``, before any model loads.

    Examples
    --------
    >>> import mgtoolkit as mg
    >>> tags = tag_image(mg.example_image(), {"mood": ["calm", "energetic"]}, captioner="tiny-clip")
    >>> sorted(label for label, _ in tags.tags["mood"]), round(sum(p for _, p in tags.tags["mood"]), 6)
    (['calm', 'energetic'], 1.0)
    """
    from ..io.images import load_image
    from ..models import captioners
    from ..runtime import pick_device

    checked = check_labels(labels)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise InvalidInputError(
            "top_k", top_k, "is not a positive whole number", "use e.g. top_k=3, or None for all"
        )
    spec = captioners.resolve_captioner(_default_name() if captioner is None else captioner)
    if spec.family != "clip":
        raise InvalidInputError(
            "captioner", captioner, "is not a CLIP model", "use 'clip', 'tiny-clip' or a CLIP folder"
        )
    picture = load_image(image)
    loaded = captioners.load_captioner(spec, pick_device(device))
    try:
        scored = score_labels(loaded.model, loaded.processor, picture, checked)
    finally:
        if not keep_loaded:
            from ..accel.pieces import give_back_free_memory

            loaded = None  # the last reference, so that releasing frees the model
            captioners.release_captioners()
            give_back_free_memory()
    tags = {k: v[:top_k] if top_k else v for k, v in scored.items()}
    return ImageTags(tags, caption_from_tags(scored), spec.name)


def _default_name() -> str:
    from ..models.registry import resolve_model

    try:
        return "tiny-clip" if resolve_model(None).is_tiny else "clip"
    except InvalidInputError:
        return "clip"
