"""Downloads: PaddleNLP's model store first (paddle weights), then the Hugging Face hub or the
mirror in ``HF_ENDPOINT``. Configurations, tokenizer files and weights only, never code (``*.py``);
index shards are checked before they are fetched.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ModelUnavailableError
from .formats import _components, _index_shards, weight_files
from .locate import _ppdiffusers_cache, hf_cache_dir
from .store import _slug

__all__ = ["FetchResult", "fetch", "fetch_repo"]


@dataclass(frozen=True)
class FetchResult:
    """What :func:`fetch` brought: ``field`` (model/captioner/writer), the name and the local folder."""

    field: str
    name: str
    folder: Path


_ALLOW = ["*.json", "*.txt", "*.model", "*.safetensors", "*.tiktoken", "*.md"]
"""What a hub download fetches: configurations, tokenizer files, safetensors; never code (``*.py``)."""


def _is_offline() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() not in ("", "0", "false", "no", "off")


def fetch_repo(
    repo_id: str,
    *,
    to: str | Path | None = None,
    field: str = "model",
    name: str | None = None,
    size: str = "",
) -> Path:
    """Download ``repo_id`` and return its local folder: PaddleNLP's model store first (paddle
    weights), then the Hugging Face hub or the mirror in ``HF_ENDPOINT`` (safetensors preferred,
    ``.bin`` only where a component has none). Both resume an interrupted download and show a
    progress bar. Into ``to``, or the libraries' caches (where :func:`locate` finds it later).

    Raises
    ------
    ModelUnavailableError
        One line naming the model, what each hub answered and the fix; offline
        (``HF_HUB_OFFLINE=1``) nothing is tried.
    """
    name = name or repo_id
    fix = (
        f"download it where there is internet (python -m mgtoolkit fetch {name} --to DIR; HF_ENDPOINT picks a "
        f"mirror such as https://hf-mirror.com) and pass {field}='/path/to/that/folder', or use {field}='tiny' "
        "to check the setup offline"
    )
    if _is_offline():
        raise ModelUnavailableError(
            f"{field}={name!r}: could not fetch {repo_id!r}{size}: offline (HF_HUB_OFFLINE=1) and not in the "
            f"Hugging Face cache ({hf_cache_dir()}) nor PaddleNLP's ({_ppdiffusers_cache()}); {fix}."
        )
    errors = []
    for hub, download in (("PaddleNLP", _download_paddlenlp), ("Hugging Face", _download_hf)):
        try:
            return download(repo_id, to)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - network, auth and hub errors become one line
            errors.append(f"{hub}: {type(exc).__name__}: {' '.join(str(exc).split())[:120]}")
    raise ModelUnavailableError(
        f"{field}={name!r}: could not fetch {repo_id!r}{size} from the model hubs ({'; '.join(errors)}); {fix}."
    )


_PADDLE_FILES = (
    "config.json",
    "scheduler_config.json",
    "preprocessor_config.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "added_tokens.json",
    "generation_config.json",
)


_PADDLE_WEIGHTS = ("diffusion_paddle_model.safetensors", "model.safetensors", "model_state.pdparams")


def _download_paddlenlp(repo_id: str, to: str | Path | None) -> Path:
    """Fetch a paddle model from PaddleNLP's store (ppdiffusers' ``bos_download``) file by file.

    A pipeline: ``model_index.json`` (checked: components are ppdiffusers/transformers classes in
    plain folders), then each component's configuration, tokenizer files and weights. One model
    (captioner, writer, CLAP): ``config.json``, its tokenizer files and weights. Weights: the first
    of safetensors, a safetensors index and its shards, ``.pdparams`` (read later through the
    restricted reader), a ``.pdparams`` index and its shards. Never code.
    """
    from .model_files import import_ppdiffusers_quietly, pipeline_components

    import_ppdiffusers_quietly()
    from huggingface_hub.utils import EntryNotFoundError
    from ppdiffusers.utils.download_utils import bos_download

    cache = str(to) if to is not None else str(_ppdiffusers_cache() / "ppdiffusers")

    def get(filename: str, subfolder: str | None = None) -> bool:
        try:
            bos_download(repo_id, filename, subfolder=subfolder, cache_dir=cache, resume_download=True)
            return True
        except EntryNotFoundError:
            return False

    folder = Path(cache) / repo_id
    if get("model_index.json"):
        parts: list[str | None] = list(pipeline_components(folder, name=repo_id))
    elif get("config.json"):
        parts = [None]
    else:
        raise FileNotFoundError(f"{repo_id} is not in the store")
    for part in parts:
        for filename in _PADDLE_FILES:
            get(filename, part)
        _get_weights(get, folder / part if part else folder, part)
    return folder


def _get_weights(get, where: Path, part: str | None) -> bool:
    """The first weights file of :data:`_PADDLE_WEIGHTS` there is, or an index and its shards."""
    for filename in _PADDLE_WEIGHTS:
        if get(filename, part):
            return True
        if get(f"{filename}.index.json", part):
            return all(get(shard, part) for shard in _index_shards(where / f"{filename}.index.json"))
    return False


def _download_hf(repo_id: str, to: str | Path | None) -> Path:
    from huggingface_hub import snapshot_download

    kwargs: dict[str, Any] = {"repo_id": repo_id}
    if to is not None:
        kwargs["local_dir"] = str(Path(to) / _slug(repo_id))
    folder = Path(snapshot_download(allow_patterns=_ALLOW, **kwargs))
    if _needs_bin(folder):  # an older repo that holds only .bin files
        folder = Path(snapshot_download(allow_patterns=[*_ALLOW, "*.bin"], **kwargs))
    return folder


def _needs_bin(folder: Path) -> bool:
    if (folder / "model_index.json").is_file():
        parts = [folder / p for p in _components(folder) if (folder / p).is_dir()]
        return any(weight_files(p) is None and (p / "config.json").is_file() for p in parts)
    return weight_files(folder) is None


def fetch(
    model: str | None = None, *, to: str | Path | None = None, also: Iterable = ()
) -> list[FetchResult]:
    """Download a model (and the stage models in ``also``) to carry to an offline machine.

    Parameters
    ----------
    model : str, optional
        Preset or hub id (``None``: the default model).
    to : str or Path, optional
        A folder to download into (one subfolder per model); ``None`` uses the Hugging Face cache,
        where ``model=<hub id>`` finds it later, also offline.
    also : iterable of (field, spec)
        More models: ``("captioner", resolve_captioner("blip2"))``, ``("writer", resolve_writer(...))``;
        ``python -m mgtoolkit fetch MODEL --with-chain`` passes the image chain's two.

    Returns
    -------
    list of FetchResult
        One per model, with the folder to pass as ``model=``/``captioner=``/``writer=``.

    Examples
    --------
    >>> from mgtoolkit.models.writers import resolve_writer
    >>> fetch("audioldm-s-full-v2", to="weights/", also=[("writer", resolve_writer("qwen2-0.5b"))])  # doctest: +SKIP
    """
    from .registry import resolve_model

    spec = resolve_model(model)
    if spec.is_tiny or spec.is_local:
        what = "built locally" if spec.is_tiny else "a local folder"
        raise ModelUnavailableError(
            f"model={spec.name!r}: nothing to fetch (it is {what}); pass a preset or hub id such as "
            "'audioldm-s-full-v2'."
        )
    wanted = [("model", spec.name, spec.source)]
    for field, stage in also:
        if stage.needs_model and not stage.is_tiny and not os.path.isdir(stage.source):
            wanted.append((field, stage.name, stage.source))
    return [
        FetchResult(field, name, fetch_repo(source, to=to, field=field, name=name))
        for field, name, source in wanted
    ]
