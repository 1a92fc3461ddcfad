"""One module's oneDNN inference predictor: exported, verified, built and run; the dygraph
weights it replaces released, and read back if it fails later.

:mod:`.onednn` decides which modules get one and routes their calls through it. The predictor's
settings are in one place, :func:`predictor_config`.

Per module, on its first call (:meth:`Engine.run`):

1. the module is exported (``export(prefix)``, :mod:`.export`) into ``<cache>/compiled/<fingerprint>/``;
2. a predictor is built from those files and run on the call's own inputs beside the dygraph
   module; it is used only if the two agree within the engine's tolerance (:func:`compare`), and the
   verdict is written next to the files (a mismatch or an export error leaves the module in
   dygraph, for good: delete the folder to try again);
3. the dygraph weights the predictor replaces are released. They wait in the file the model was
   loaded from (checked bit for bit, :func:`.lowmem.weights_source`); only a module whose weights
   that file does not hold has them written once to ``weights.safetensors`` in the export's folder.

A predictor that fails after it was verified reads those weights back and hands its module to
dygraph for good (``Engine.state == "dygraph"``, the reason in ``Engine.detail["fallback"]``).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import private_dir
from . import footprint, lowmem, stash
from .pieces import blas_on_all_cores, give_back_free_memory

__all__ = ["Engine", "compare", "predictor_config", "make_predictor"]

log = logging.getLogger(__name__)


class Engine:
    """A module's oneDNN predictor: exported, verified and built on first use, cached on disk.

    Parameters
    ----------
    folder : Path
        ``<cache>/<fingerprint>``: ``model.json``/``model.pdiparams``, the verdict
        (``verdict.json``, ``verdict-bfloat16.json``) and, only where ``loaded_from`` does not hold
        them, ``weights.safetensors``: the dygraph weights the predictor replaces, kept so that a
        later failure can hand the module back.
    export : callable
        ``export(prefix)`` writes ``prefix.json`` and ``prefix.pdiparams``.
    modules : tuple of Layer
        The dygraph modules whose weights the predictor replaces (released once it is verified).
    precision : {"float32", "bfloat16"}
        ``bfloat16`` runs the predictor with oneDNN's bfloat16 kernels (CPUs with AVX512_BF16 or
        AMX).
    tolerance : float
        The verification bound (:func:`compare`): of the largest difference, relative to the
        reference's peak, in float32; of the relative L2 distance to float32 dygraph in bfloat16.
    loaded_from : tuple of (Layer, Path), optional
        The component ``modules`` belong to and the folder it was loaded from: the released weights
        are read back from its safetensors when they are the same bit for bit
        (:func:`.lowmem.weights_source`), with no copy written.
    measure : callable, optional
        In bfloat16, what is compared instead of the raw output (``measure(array) -> array``; the
        vocoder's: the mel spectrogram of its waveform, :func:`.onednn.waveform_mel`).
    passes_off : tuple of str
        Paddle Inference passes the predictor is built without (:func:`predictor_config`).

    Attributes
    ----------
    state : str
        ``pending`` (not verified yet), ``ready`` (the predictor runs), ``failed`` (the export did
        not verify: dygraph) or ``dygraph`` (the predictor failed after it was ready; the weights
        were read back and the module runs in dygraph until the model is loaded again).
    source : lowmem.Source or None
        Where the released weights are read back from when they were not written to
        :attr:`weights_path` (set on release).
    """

    def __init__(
        self,
        folder: Path,
        export: Callable[[str], None],
        modules: tuple[Any, ...],
        precision: str = "float32",
        loaded_from: tuple[Any, Path] | None = None,
        *,
        tolerance: float,
        measure: Callable[[Any], Any] | None = None,
        passes_off: tuple[str, ...] = (),
    ):
        self.folder = folder
        self.measure, self.passes_off = measure, tuple(passes_off)
        self._export = export
        self.modules = tuple(modules)
        self.precision = precision
        self.tolerance = tolerance
        self._loaded_from = loaded_from
        self.source = None
        self._predictor = None
        self.state = "pending"
        self.detail: dict[str, Any] = {}
        verdict = self._verdict()
        if verdict.get("ok") and (folder / "model.pdiparams").exists():
            self.detail = verdict
            self.state = "ready"
            self._release()  # verified before: the dygraph weights wait in their file
        elif verdict and not verdict.get("ok"):
            self.detail = verdict
            self.state = "failed"

    @property
    def verdict_path(self) -> Path:
        return self.folder / (
            "verdict.json" if self.precision == "float32" else f"verdict-{self.precision}.json"
        )

    @property
    def weights_path(self) -> Path:
        return self.folder / "weights.safetensors"

    # -- public ---------------------------------------------------------------------------
    def run(self, arrays: list, reference: Callable[[], Any]):
        """The predictor's output for ``arrays`` (numpy), or ``None`` to say: use dygraph.

        ``reference()`` computes the dygraph output (numpy); it is called once, on the first call
        of a module not verified yet, to check the export. A predictor that fails once it is ready
        (an input it cannot take, any runtime error) hands the module back to dygraph for good
        (:meth:`fall_back`) and this call returns ``None``.
        """
        if self.state in ("failed", "dygraph"):
            return None
        if self.state == "pending":
            return self._first(arrays, reference)
        try:
            return self._infer(arrays)
        except Exception as exc:  # noqa: BLE001 - whatever the predictor raises, dygraph still works
            self.fall_back(f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}")
            return None

    def fall_back(self, reason: str) -> None:
        """Read the dygraph weights back and run the module in dygraph from now on.

        Raises
        ------
        RuntimeError
            If the weights file is gone from the cache: load the model again.
        """
        if self.state != "ready":
            return
        log.warning("mgtoolkit: %s goes back to dygraph: %s", self.folder.name, reason)
        try:
            if self.source is not None:
                self.source.restore(self.modules)
            else:
                stash.restore(self.modules, self.weights_path)
        except (OSError, ValueError, RuntimeError) as exc:
            raise RuntimeError(
                f"the {self.folder.name} predictor failed ({reason}) and its dygraph weights could not "
                f"be read back ({exc}); load the model again"
            ) from exc
        self._predictor = None
        self.detail = {**self.detail, "fallback": reason}
        self.state = "dygraph"

    # -- internals -------------------------------------------------------------------------
    def _verdict(self) -> dict[str, Any]:
        try:
            return json.loads(self.verdict_path.read_text())
        except (OSError, ValueError):
            return {}

    def _release(self) -> None:
        """Free the dygraph weights, once they can be read back: from the file they were loaded
        from (no copy), else from ``weights.safetensors`` (written once)."""
        if self._loaded_from is not None:
            component, folder = self._loaded_from
            self.source = lowmem.weights_source(component, self.modules, folder)
        if self.source is not None:
            stash.release(self.modules, self.source.kept)
            give_back_free_memory()
            return
        try:
            if not self.weights_path.exists():
                stash.save_weights(self.modules, self.weights_path)
        except OSError as exc:  # no room or no right to write: keep the weights, keep the fallback
            self.detail = {**self.detail, "weights_kept": f"{type(exc).__name__}: {exc}"}
            return
        stash.release(self.modules)
        give_back_free_memory()

    def _first(self, arrays: list, reference: Callable[[], Any]):
        import numpy as np

        expected = np.asarray(reference())
        try:
            if not (self.folder / "model.pdiparams").exists():
                self._export_atomically()
            got = self._infer(arrays)
        except Exception as exc:  # an op this paddle cannot export or run: stay in dygraph
            self._fail({"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
            return expected
        verdict = compare(got, expected, self.precision, self.tolerance, measure=self.measure)
        verdict["checked_shapes"] = [list(a.shape) for a in arrays]
        if not verdict["ok"]:
            self._fail(verdict)
            return expected
        _write_json(self.verdict_path, verdict)
        self.detail = verdict
        self.state = "ready"
        self._release()
        return got

    def _fail(self, verdict: dict[str, Any]) -> None:
        log.warning(
            "mgtoolkit: %s stays in dygraph: its oneDNN export did not verify (%s)", self.folder.name, verdict
        )
        self._predictor = None
        try:  # remembered, so that later loads do not try again
            private_dir(self.folder)
            _write_json(self.verdict_path, verdict)
        except OSError:  # a read-only or odd cache: this process still falls back
            pass
        self.detail = verdict
        self.state = "failed"

    def _export_atomically(self) -> None:
        private_dir(self.folder)
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=self.folder))
        try:
            self._export(str(tmp / "model"))
            for suffix in (".json", ".pdiparams"):  # the weights last: their presence means complete
                os.replace(tmp / f"model{suffix}", self.folder / f"model{suffix}")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _infer(self, arrays: list):
        if self._predictor is None:
            self._predictor = make_predictor(self.folder / "model", self.precision, self.passes_off)
        predictor, kind = self._predictor, self.folder.name.split("-")[0]
        footprint.before_run(kind)
        for name, array in zip(predictor.get_input_names(), arrays, strict=True):
            handle = predictor.get_input_handle(name)
            handle.reshape(list(array.shape))
            handle.copy_from_cpu(array)
        try:
            predictor.run()
        finally:
            blas_on_all_cores()  # the run leaves the caller on one thread
        out = predictor.get_output_handle(predictor.get_output_names()[0]).copy_to_cpu()
        footprint.after_run(kind, predictor)  # clears the run's tensors, gives freed heap back
        return out


def compare(
    got: Any, expected: Any, precision: str, tolerance: float, *, measure: Callable[[Any], Any] | None = None
) -> dict[str, Any]:
    """The verdict on a predictor's output ``got`` against dygraph's ``expected`` (numpy arrays).

    float32 must agree within ``tolerance`` of the reference's peak (largest difference); bfloat16
    within ``tolerance`` relative L2 (the bounds: :data:`.onednn.TOLERANCE`, :data:`.onednn.BF16_TOLERANCE`),
    of ``measure(got)`` against ``measure(expected)`` where a measure is given (the relative L2 of
    the raw outputs is then recorded beside it as ``output_relative_l2``).
    """
    import numpy as np

    peak = float(np.abs(expected).max()) or 1.0
    if got.shape != expected.shape:
        return {
            "ok": False,
            "max_abs_diff": float("inf"),
            "reference_peak": peak,
            "relative_l2": float("inf"),
        }
    diff = float(np.abs(got - expected).max())
    rel = _relative_l2(got, expected)
    verdict = {"max_abs_diff": diff, "reference_peak": peak, "relative_l2": rel, "precision": precision}
    if precision == "bfloat16" and measure is not None:
        measured = _relative_l2(measure(got), measure(expected))
        verdict.update(
            relative_l2=measured, output_relative_l2=rel, measured_on=getattr(measure, "name", "measure")
        )
        rel = measured
    ok = rel <= tolerance if precision == "bfloat16" else diff <= tolerance * peak
    return {"ok": bool(ok), **verdict}


def _relative_l2(got: Any, expected: Any) -> float:
    """``|got - expected| / |expected|`` (L2 over all values; the difference in float64)."""
    import numpy as np

    norm = float(np.linalg.norm(expected)) or 1.0
    return float(np.linalg.norm(np.asarray(got, np.float64) - np.asarray(expected, np.float64)) / norm)


def predictor_config(prefix: Path, precision: str = "float32", passes_off: tuple[str, ...] = ()):
    """Every setting of a predictor built from ``prefix.json``/``prefix.pdiparams``: the one place
    to tune them (``paddle.inference.Config``); ``passes_off`` are left out of its passes."""
    from paddle import inference

    from .pieces import usable_cores

    config = inference.Config(f"{prefix}.json", f"{prefix}.pdiparams")
    config.disable_gpu()
    config.disable_glog_info()
    config.set_cpu_math_library_num_threads(usable_cores())
    config.enable_onednn()
    config.set_onednn_cache_capacity(1)  # primitives for one input shape: -0.7 GB peak, same speed
    if precision == "bfloat16":
        config.enable_onednn_bfloat16()
    for name in passes_off:
        config.delete_pass(name)
    return config


def make_predictor(prefix: Path, precision: str = "float32", passes_off: tuple[str, ...] = ()):
    """A predictor with :func:`predictor_config`'s settings."""
    from paddle import inference

    return inference.create_predictor(predictor_config(prefix, precision, passes_off))


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)
