"""Build a tiny model once: in a private staging folder, seeded, renamed into place."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from ...config import cache_root, private_dir
from ..architectures import write_bpe_tokenizer_files

__all__ = ["built_once", "roberta_tokenizer", "save_model"]


def built_once(
    name: str,
    build: Callable[[Path], None],
    *,
    seed: int,
    root: Path | None = None,
    marker: str = "config.json",
) -> Path:
    """``root / name`` (default the cache), made once by ``build(folder)`` with paddle seeded to ``seed``.

    Built in a private staging folder and renamed into place once ``marker`` is written, so a
    half-built model is never seen and two concurrent builds leave one; the caller's random stream is
    left as it was.
    """
    target = (root or cache_root()) / name
    if (target / marker).is_file():
        return target
    from ...runtime import import_paddle, quiet_model_logs

    paddle = import_paddle()
    quiet_model_logs()
    private_dir(target.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))  # 0700, like the cache
    state = paddle.get_rng_state()  # building must not disturb the caller's random stream
    try:
        paddle.seed(seed)
        build(staging)
        try:
            os.rename(staging, target)
        except OSError:
            if not (target / marker).is_file():  # not a concurrent build that won
                raise
    finally:
        paddle.set_rng_state(state)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def roberta_tokenizer(folder: Path, max_length: int = 512):
    """The tiny byte-level BPE (:func:`~mgtoolkit.models.architectures.write_bpe_tokenizer_files`, its
    files written into ``folder``) as paddlenlp's ``RobertaTokenizer``; returns it and its vocabulary."""
    from ppdiffusers.transformers import RobertaTokenizer

    vocab = write_bpe_tokenizer_files(folder)
    tokenizer = RobertaTokenizer(
        vocab_file=str(folder / "vocab.json"),
        merges_file=str(folder / "merges.txt"),
        model_max_length=max_length,
    )
    return tokenizer, vocab


def save_model(folder: Path, model, *parts) -> None:
    """Save ``model`` in eval mode as safetensors (never a pickle) and each of ``parts`` (tokenizer,
    processor, feature extractor) into ``folder``; remove the scratch folder ``folder/_src``."""
    model.eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    for part in parts:
        part.save_pretrained(str(folder))
    shutil.rmtree(folder / "_src", ignore_errors=True)
