"""What a predictor is checked on: the raw output, or (the bfloat16 vocoder) its waveform's mel.

No timings here (the figures are in benchmarks/README.md).
"""

from __future__ import annotations

import numpy as np
import pytest

from mgtoolkit.accel.onednn import BF16_TOLERANCE, VOCODER_BF16_PASSES_OFF, waveform_mel
from mgtoolkit.accel.predictor import compare
from mgtoolkit.runtime import cpu_has_bfloat16

pytestmark = pytest.mark.filterwarnings("ignore")
RATE = 16000


def _tone(phase=0.0, seconds=0.5, hz=440.0):
    t = np.arange(int(RATE * seconds)) / RATE
    return (0.3 * np.sin(2 * np.pi * hz * t + phase)).astype("float32")[None, :]


def test_the_mel_hears_no_difference_where_the_samples_differ_by_their_phase():
    mel = waveform_mel(RATE, 64)
    a, b = _tone(), _tone(phase=np.pi)  # the same tone, upside down
    raw = compare(b, a, "bfloat16", BF16_TOLERANCE)
    assert raw["ok"] is False and raw["relative_l2"] > 1.9
    heard = compare(b, a, "bfloat16", BF16_TOLERANCE, measure=mel)
    assert heard["ok"] is True and heard["relative_l2"] < 1e-3
    assert heard["measured_on"] == "mel" and heard["output_relative_l2"] == raw["relative_l2"]


def test_the_mel_still_tells_another_sound():
    mel = waveform_mel(RATE, 64)
    verdict = compare(_tone(hz=880.0), _tone(), "bfloat16", BF16_TOLERANCE, measure=mel)
    assert verdict["ok"] is False and verdict["relative_l2"] > 0.5


def test_float32_is_checked_on_the_samples_whatever_the_measure():
    mel = waveform_mel(RATE, 64)
    a = _tone()
    verdict = compare(-a, a, "float32", 1e-4, measure=mel)
    assert verdict["ok"] is False and "measured_on" not in verdict


def test_the_mel_has_the_bands_and_frames_asked_for():
    out = waveform_mel(RATE, 64)(_tone(seconds=1.0))
    assert out.shape == (64, 101) and out.dtype == np.float32  # hop 10 ms, centred frames


@pytest.mark.slow
@pytest.mark.skipif(not cpu_has_bfloat16(), reason="no AVX512_BF16/AMX")
def test_the_bfloat16_vocoder_builds_only_without_the_unsqueeze_fusion(tmp_path):
    """paddle 3.3.1: with ``operator_unsqueeze_onednn_fuse_pass`` the bfloat16 passes reject the
    vocoder's 1-D convolutions; without it the predictor runs, within bounds on the mel."""
    from test_graph_export import run_predictor
    from test_speed_equivalence import _plain_pipe

    from mgtoolkit.accel import onednn

    vocoder = _plain_pipe().vocoder
    config = vocoder.config
    prefix = tmp_path / "model"
    specs = [onednn.spec([None, None, int(config.model_in_dim)])]
    onednn._exporter(vocoder, type(vocoder).forward, specs)(str(prefix))
    mel = np.random.default_rng(0).standard_normal((1, 120, int(config.model_in_dim))).astype("float32")

    with pytest.raises(ValueError, match="should be a 4-D or 5-D Tensor"):
        run_predictor(prefix, mel, "bfloat16")
    got = run_predictor(prefix, mel, "bfloat16", VOCODER_BF16_PASSES_OFF)
    import paddle

    with paddle.no_grad():
        expected = vocoder(paddle.to_tensor(mel)).numpy()
    verdict = compare(
        got, expected, "bfloat16", BF16_TOLERANCE, measure=waveform_mel(16000, int(config.model_in_dim))
    )
    assert verdict["ok"] is True and verdict["output_relative_l2"] > 0  # bfloat16 really ran
