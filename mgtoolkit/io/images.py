"""Images from users: a path, bytes, a PIL image or an array, turned into a safe RGB PIL image.

Handles corrupt, truncated, zero-byte and non-image input (one-line :class:`InvalidInputError`
naming ``image``), every PIL mode (CMYK, RGBA composited on white, palette, 16-bit, grayscale),
EXIF orientation, decompression bombs, and downscales huge images before any model sees them.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError

__all__ = ["load_image", "example_image", "MAX_SIDE", "MAX_PIXELS", "MAX_FILE_BYTES"]

MAX_SIDE = 1024
"""Longest side (pixels) of the image handed to a captioner; larger images are downscaled."""

MAX_PIXELS = 100_000_000
"""Images claiming more pixels than this are refused before decoding (decompression bombs)."""

MAX_FILE_BYTES = 200_000_000
"""Image files larger than this are refused before they are read."""

_FIX_FILE = "pass a PNG/JPEG/WebP file path, its bytes, a PIL image or an RGB array"


def load_image(image: Any, *, max_side: int = MAX_SIDE, field: str = "image"):
    """Open and normalise an image for a captioner.

    Parameters
    ----------
    image : str, Path, bytes, file object, PIL.Image.Image or numpy.ndarray
        The picture. Arrays are ``(H, W)``, ``(H, W, 3)`` or ``(H, W, 4)``, uint8, uint16 or float
        in ``[0, 1]``.
    max_side : int
        Longest side of the result; larger images are downscaled (aspect kept).
    field : str
        Argument name used in error messages.

    Returns
    -------
    PIL.Image.Image
        An RGB image, upright (EXIF orientation applied), at most ``max_side`` on its longest side.

    Raises
    ------
    InvalidInputError
        If ``image`` is missing, empty, not an image, corrupt, truncated, or absurdly large.

    Examples
    --------
    >>> import numpy as np
    >>> load_image(np.zeros((2000, 1000), dtype=np.uint8)).size
    (512, 1024)
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        pil = image
        if pil.width * pil.height > MAX_PIXELS:
            _refuse_bomb(field, pil.width, pil.height)
    elif isinstance(image, np.ndarray):
        pil = _from_array(image, field)
    else:
        pil = _open(_read_bytes(image, field), field, repr(image)[:60])
    return _downscale(_to_rgb(_upright(pil), field), max_side)


def _read_bytes(image: Any, field: str) -> bytes:
    if image is None:
        raise InvalidInputError(field, image, "is missing", _FIX_FILE)
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
    elif isinstance(image, (str, os.PathLike)):
        path = Path(image).expanduser()
        if not path.is_file():
            raise InvalidInputError(field, str(image), "is not an existing file", _FIX_FILE)
        if path.stat().st_size > MAX_FILE_BYTES:
            raise InvalidInputError(
                field,
                str(image),
                f"is larger than {MAX_FILE_BYTES / 1e6:g} MB",
                "resize or compress it first",
            )
        data = path.read_bytes()
    elif hasattr(image, "read"):
        data = image.read()
    else:
        raise InvalidInputError(field, image, f"is a {type(image).__name__}, not an image", _FIX_FILE)
    if not data:
        raise InvalidInputError(
            field,
            image if not isinstance(image, bytes) else b"",
            "is empty (zero bytes)",
            "upload the image again; " + _FIX_FILE,
        )
    return data


def _open(data: bytes, field: str, shown: str):
    """Decode ``data`` fully, so truncation and corruption surface here and not in a model."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            pil = Image.open(io.BytesIO(data))
            if pil.width * pil.height > MAX_PIXELS:
                _refuse_bomb(field, pil.width, pil.height)
            pil.load()
    except InvalidInputError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InvalidInputError(
            field, shown, "has too many pixels to decode safely", "resize it below 100 megapixels first"
        ) from None
    except UnidentifiedImageError:
        raise InvalidInputError(field, shown, "is not an image file PIL can read", _FIX_FILE) from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidInputError(
            field, shown, f"is corrupt or truncated ({str(exc)[:60]})", "export or download the image again"
        ) from None
    return pil


def _refuse_bomb(field: str, width: int, height: int) -> None:
    raise InvalidInputError(
        field,
        f"{width}x{height} image",
        "has too many pixels to decode safely",
        "resize it below 100 megapixels first",
    )


def _from_array(array: np.ndarray, field: str):
    from PIL import Image

    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)) or min(a.shape[:2]) < 1:
        raise InvalidInputError(
            field,
            f"array of shape {a.shape}",
            "is not an image array",
            "pass (H, W), (H, W, 3) or (H, W, 4) pixels",
        )
    if a.shape[0] * a.shape[1] > MAX_PIXELS:
        _refuse_bomb(field, a.shape[1], a.shape[0])
    if np.issubdtype(a.dtype, np.floating):
        if not np.isfinite(a).all():
            raise InvalidInputError(
                field, "float array with NaN/inf", "has non-finite pixels", "pass finite values in [0, 1]"
            )
        a = np.clip(a, 0.0, 1.0) * 255.0
    elif a.dtype == np.uint16 or (np.issubdtype(a.dtype, np.integer) and a.max(initial=0) > 255):
        a = a.astype(np.float64) / max(float(a.max()), 1.0) * 255.0
    elif a.dtype == np.bool_:
        a = a * 255
    return Image.fromarray(np.ascontiguousarray(np.clip(a, 0, 255).astype(np.uint8)))


def _upright(pil):
    from PIL import ImageOps

    try:
        return ImageOps.exif_transpose(pil)
    except Exception:  # noqa: BLE001 - a broken EXIF block must not lose the picture
        return pil


def _to_rgb(pil, field: str):
    """Any PIL mode to RGB; transparency composited on white, 16-bit scaled to 8-bit."""
    from PIL import Image

    if pil.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        a = np.asarray(pil, dtype=np.float64)
        top = a.max() if a.size and a.max() > 0 else 1.0
        pil = Image.fromarray(np.clip(a / top * 255.0, 0, 255).astype(np.uint8), "L")
    if pil.mode == "P" or (pil.mode in ("L", "RGB") and "transparency" in pil.info):
        pil = pil.convert("RGBA")
    if pil.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        pil = pil.convert("RGBA")
        background = Image.new("RGBA", pil.size, (255, 255, 255, 255))
        pil = Image.alpha_composite(background, pil)
    try:
        return pil.convert("RGB")
    except (ValueError, OSError) as exc:
        raise InvalidInputError(
            field,
            f"{pil.mode} image",
            f"cannot be converted to RGB ({exc})",
            "save it as an 8-bit RGB PNG or JPEG",
        ) from None


def _downscale(pil, max_side: int):
    from PIL import Image

    longest = max(pil.size)
    if longest <= max_side:
        return pil
    scale = max_side / longest
    size = (max(1, round(pil.width * scale)), max(1, round(pil.height * scale)))
    return pil.resize(size, Image.Resampling.LANCZOS)


def example_image() -> Path:
    """Path of the bundled example picture (a nightclub dance floor, drawn with PIL).

    Examples
    --------
    >>> example_image().name
    'example_scene.png'
    """
    return Path(__file__).parent.parent / "assets" / "example_scene.png"
