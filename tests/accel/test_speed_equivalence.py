"""The speed-ups change nothing that is made: optimised path against the plain ppdiffusers call (tiny model).

No timings are asserted here; ``benchmarks/bench_audioldm.py`` measures speed.
"""

from __future__ import annotations

import numpy as np
import pytest

PROMPT = "calm piano with soft rain"
NEGATIVE = "low quality, noise"


@pytest.fixture(scope="module")
def paddle():
    from mgtoolkit.runtime import import_paddle

    return import_paddle()


def _plain_pipe():
    """The tiny pipeline straight from ppdiffusers: no mgtoolkit optimisation."""
    from mgtoolkit.models.audioldm import import_ppdiffusers
    from mgtoolkit.models.tiny.pipelines import tiny_audioldm_dir

    pipe = import_ppdiffusers().AudioLDMPipeline.from_pretrained(str(tiny_audioldm_dir()))
    pipe.set_progress_bar_config(disable=True)
    for part in (pipe.unet, pipe.vae, pipe.text_encoder, pipe.vocoder):
        part.eval()
    return pipe


@pytest.fixture(scope="module")
def plain():
    return _plain_pipe()


@pytest.fixture(scope="module")
def optimised():
    """A second copy with the speed-ups forced on two threads, whatever the machine has."""
    from mgtoolkit import accel

    pipe = _plain_pipe()
    report = accel.optimize(pipe, "cpu", threads=2, onednn=())  # not the user's MGTOOLKIT_COMPILE
    assert len(report["applied"]) == 3
    return pipe


def _latents(pipe, seconds: float, seeds: list[int]):
    from mgtoolkit.models.audioldm import initial_latents

    hop = int(np.prod(pipe.vocoder.config.upsample_rates))
    scale = pipe.vae_scale_factor
    height = int(np.ceil(int(seconds * pipe.vocoder.config.sampling_rate / hop) / scale)) * scale
    shape = (pipe.unet.config.in_channels, height // scale, pipe.vocoder.config.model_in_dim // scale)
    return initial_latents(shape, seeds)


def _waves(paddle, pipe, seconds: float, seeds: list[int], guidance: float = 2.5) -> np.ndarray:
    with paddle.no_grad():
        out = pipe(
            prompt=PROMPT,
            negative_prompt=NEGATIVE,
            audio_length_in_s=seconds,
            num_inference_steps=3,
            guidance_scale=guidance,
            num_waveforms_per_prompt=len(seeds),
            latents=paddle.to_tensor(_latents(pipe, seconds, seeds)),
            output_type="np",
        )
    return np.asarray(out.audios, dtype=np.float32).reshape(len(seeds), -1)


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    scale = float(np.abs(want).max())
    assert scale > 0
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * scale)


@pytest.mark.parametrize(
    ("seconds", "seeds"),
    [
        (1.0, [3]),  # UNet guidance pair split; vocoder too short to split
        (1.0, [3, 4, 5]),  # candidates: UNet, VAE and vocoder batches split unevenly
        (3.0, [7]),  # one long spectrogram: the vocoder splits it along time
    ],
)
def test_optimised_pipeline_equals_plain(paddle, plain, optimised, seconds, seeds):
    _assert_close(_waves(paddle, optimised, seconds, seeds), _waves(paddle, plain, seconds, seeds))


def test_generate_equals_plain_ppdiffusers_call(paddle, plain, tiny_model):
    import mgtoolkit as mg

    clips = mg.generate(
        PROMPT,
        NEGATIVE,
        audio_length_in_s=3.0,
        num_inference_steps=3,
        guidance_scale=2.5,
        seed=11,
        num_waveforms_per_prompt=2,
        model="tiny",
        device="cpu",
    )
    got = np.stack([c.waveform for c in clips])
    want = np.clip(_waves(paddle, plain, 3.0, [11, 12]), -1.0, 1.0)  # clips are tidied into [-1, 1]
    _assert_close(got, want)


def test_vocoder_time_split_covers_the_receptive_field(paddle, plain):
    """Changing one mel frame moves no output sample farther away than the margin says."""
    from mgtoolkit.accel.pieces import vocoder_receptive_frames

    vocoder = plain.vocoder
    margin = vocoder_receptive_frames(vocoder.config)
    hop = int(np.prod(vocoder.config.upsample_rates))
    rng = np.random.default_rng(0)
    mel = rng.standard_normal((1, 4 * margin, 64)).astype(np.float32)
    bumped = mel.copy()
    frame = 2 * margin
    bumped[0, frame] += 5.0
    with paddle.no_grad():
        a = vocoder(paddle.to_tensor(mel)).numpy()
        b = vocoder(paddle.to_tensor(bumped)).numpy()
    moved = np.flatnonzero(np.abs(a - b)[0] > 0)
    assert moved.size > 0
    assert moved.min() >= (frame - margin) * hop
    assert moved.max() < (frame + 1 + margin) * hop


def test_prompts_padded_to_longest_equal_512_padded(paddle, plain, tiny_model):
    from mgtoolkit.models.audioldm import encode_prompts

    assert tiny_model.max_prompt_tokens == 512
    ours = encode_prompts(tiny_model, [PROMPT, NEGATIVE]).numpy()
    with paddle.no_grad():
        # ppdiffusers pads both to tokenizer.model_max_length (512) and returns [negative, prompt].
        theirs = plain._encode_prompt(PROMPT, 1, True, NEGATIVE).numpy()
    np.testing.assert_allclose(ours, theirs[::-1], rtol=1e-5, atol=1e-6)


def test_guidance_off_runs_the_unet_on_one_branch(fast):
    import mgtoolkit as mg

    batches = []
    model = mg.load_model("tiny")  # the pipeline generate uses now (the session's may be evicted)
    handle = model.pipe.unet.register_forward_pre_hook(lambda layer, args: batches.append(args[0].shape[0]))
    try:
        mg.generate(PROMPT, NEGATIVE, **{**fast, "guidance_scale": 1.0}, seed=1)
        mg.generate(PROMPT, NEGATIVE, **{**fast, "guidance_scale": 2.5}, seed=1)
    finally:
        handle.remove()
    steps = fast["num_inference_steps"]
    assert batches == [1] * steps + [2] * steps


def test_optimize_leaves_gpu_alone_and_runs_once(plain):
    from mgtoolkit import accel

    class Stub:
        unet = vae = vocoder = None

    assert accel.optimize(Stub(), "gpu:0", threads=2)["applied"] == []
    stub = Stub()
    stub.unet = plain.unet
    assert accel.optimize(stub, "cpu", threads=1, onednn=())["applied"] == []  # one thread: nothing to split


def test_optimize_patches_once(optimised):
    from mgtoolkit import accel

    forward = optimised.unet.forward
    again = accel.optimize(optimised, "cpu", threads=2, onednn=())
    assert again is optimised._mgtoolkit_optimizations and len(again["applied"]) == 3
    assert optimised.unet.forward is forward


@pytest.mark.parametrize(
    ("value", "on"), [(None, True), ("1", True), ("0", False), ("off", False), ("False", False)]
)
def test_optimize_switch(value, on):
    from mgtoolkit.config import flag

    assert flag("MGTOOLKIT_OPTIMIZE", environ={} if value is None else {"MGTOOLKIT_OPTIMIZE": value}) is on


@pytest.mark.slow
@pytest.mark.skipif(
    not __import__("mgtoolkit.runtime", fromlist=["x"]).cpu_has_bfloat16(), reason="no AVX512_BF16/AMX"
)
def test_generate_in_bfloat16_records_it_and_repeats_bit_for_bit(monkeypatch, tmp_path, fast):
    import mgtoolkit as mg

    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("MGTOOLKIT_LOW_MEMORY", "0")
    request = {**fast, "seed": 21, "rank": False, "device": "cpu"}
    first = mg.generate(PROMPT, NEGATIVE, dtype="bfloat16", **request)
    again = mg.generate(PROMPT, NEGATIVE, dtype="bfloat16", **request)
    wide = mg.generate(PROMPT, NEGATIVE, dtype="float32", **request)
    assert first.model_info["dtype"] == "bfloat16" and wide.model_info["dtype"] == "float32"
    np.testing.assert_array_equal(again.waveform, first.waveform)
    assert not np.array_equal(first.waveform, wide.waveform)
    loaded = mg.load_model("tiny", dtype="bfloat16", low_memory=False)
    assert loaded.pipe._mgtoolkit_optimizations["precision"] == "bfloat16"
    assert str(loaded.pipe.unet.dtype).endswith("float32")  # the dygraph weights stay float32
