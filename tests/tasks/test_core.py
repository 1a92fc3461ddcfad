"""The text-to-music core on the tiny AudioLDM: every knob reaches the pipeline, seeds own results."""

from __future__ import annotations

import threading

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.models import audioldm

PROMPT = "smooth jazz piano, relaxed lounge"


@pytest.fixture(scope="module")
def base(tiny_model, fast):
    return mg.generate(PROMPT, negative_prompt="low quality, noise", seed=120, **fast)


def _differs(a: mg.Clip, b: mg.Clip) -> bool:
    return a.waveform.shape != b.waveform.shape or not np.allclose(a.waveform, b.waveform, atol=1e-6)


def test_clip_is_mono_float32_in_range_at_the_vocoder_rate(base, tiny_model):
    assert base.waveform.dtype == np.float32 and base.waveform.ndim == 1
    assert np.abs(base.waveform).max() <= 1.0
    assert base.waveform.std() > 1e-3  # the tiny model's noise is audible, not silence
    assert base.sample_rate == tiny_model.pipe.vocoder.config.sampling_rate == 16000
    assert base.seed == 120 and base.request.model == "tiny"


@pytest.mark.parametrize("seconds", [0.5, 1.0, 2.37])
def test_length_is_seconds_times_rate(seconds, fast):
    clip = mg.generate(PROMPT, seed=1, **{**fast, "audio_length_in_s": seconds})
    assert clip.waveform.shape == (int(seconds * clip.sample_rate),)
    assert clip.duration == pytest.approx(seconds, abs=1 / clip.sample_rate)


def test_same_seed_gives_identical_waveform_even_after_other_random_draws(base, fast):
    import paddle

    paddle.seed(999)
    paddle.randn([17])  # anything else drawing from paddle's RNG in between
    np.random.seed(3)  # noqa: NPY002 - the legacy global state users touch
    again = mg.generate(PROMPT, negative_prompt="low quality, noise", seed=120, **fast)
    assert np.array_equal(again.waveform, base.waveform)


@pytest.mark.parametrize(
    "change",
    [
        {"prompt": "heavy metal drums and distorted guitar"},
        {"negative_prompt": "piano"},
        {"guidance_scale": 7.0},
        {"num_inference_steps": 5},
        {"seed": 121},
        {"scheduler": "dpm++"},
    ],
    ids=lambda c: next(iter(c)),
)
def test_every_knob_changes_the_output(base, fast, change):
    kwargs = {"prompt": PROMPT, "negative_prompt": "low quality, noise", "seed": 120, **fast, **change}
    assert _differs(mg.generate(**kwargs), base)


def test_audio_length_changes_the_length(base, fast):
    longer = mg.generate(
        PROMPT, negative_prompt="low quality, noise", seed=120, **{**fast, "audio_length_in_s": 1.5}
    )
    assert longer.waveform.shape[0] == int(1.5 * 16000) != base.waveform.shape[0]


def test_negative_prompt_is_ignored_without_guidance(fast):
    a = mg.generate(PROMPT, negative_prompt="piano", seed=4, guidance_scale=1.0, **fast)
    b = mg.generate(PROMPT, negative_prompt="drums", seed=4, guidance_scale=1.0, **fast)
    assert np.array_equal(a.waveform, b.waveform)


def test_candidates_have_consecutive_seeds_and_each_can_be_remade(fast):
    clips = mg.generate(PROMPT, seed=50, num_waveforms_per_prompt=3, rank=False, **fast)
    assert [c.seed for c in clips] == [50, 51, 52]
    assert all(c.request.num_waveforms_per_prompt == 3 for c in clips)
    assert _differs(clips[0], clips[1]) and _differs(clips[1], clips[2])
    alone = mg.generate(PROMPT, seed=51, **fast)
    np.testing.assert_allclose(alone.waveform, clips[1].waveform, atol=1e-4)


def test_seed_none_is_resolved_and_recorded(fast):
    clip = mg.generate(PROMPT, seed=None, **fast)
    assert isinstance(clip.seed, int) and 0 <= clip.seed < 2**32
    assert np.array_equal(mg.generate(PROMPT, seed=clip.seed, **fast).waveform, clip.waveform)


def test_matches_the_plain_ppdiffusers_pipeline_call(tiny_model, fast):
    """Our short-padded batch encoding + numpy latents equal what the pipeline does with strings."""
    import paddle

    clip = mg.generate(PROMPT, negative_prompt="noise", seed=7, **fast)
    plain_model = mg.load_model("tiny", optimize=False)  # not the optimised pipeline that made the clip
    assert plain_model.pipe is not tiny_model.pipe and not hasattr(
        plain_model.pipe, "_mgtoolkit_optimizations"
    )
    shape = audioldm.latent_shape(plain_model, fast["audio_length_in_s"])
    latents = paddle.to_tensor(audioldm.initial_latents(shape, [7]))
    plain = plain_model.pipe(
        prompt=PROMPT,
        negative_prompt="noise",
        latents=latents,
        audio_length_in_s=fast["audio_length_in_s"],
        num_inference_steps=fast["num_inference_steps"],
        guidance_scale=2.5,
    ).audios[0]
    np.testing.assert_allclose(clip.waveform, np.clip(plain, -1, 1), atol=1e-5)


def test_callback_sees_every_step_with_numpy_latents(tiny_model, fast):
    seen = []
    mg.generate(PROMPT, seed=1, callback=lambda i, n, lat: seen.append((i, n, lat.shape, type(lat))), **fast)
    shape = audioldm.latent_shape(tiny_model, fast["audio_length_in_s"])
    assert seen == [(i, 3, (1, *shape), np.ndarray) for i in range(3)]


def test_cancel_stops_at_the_next_step(fast):
    cancel = threading.Event()
    steps = []

    def on_step(i, n, lat):
        steps.append(i)
        cancel.set()

    with pytest.raises(mg.GenerationCancelled, match="after step 2 of 3"):
        mg.generate(PROMPT, seed=1, callback=on_step, cancel=cancel, **fast)
    assert steps == [0]


def test_load_is_cached_per_process():
    """Within a test and across tests (the settings forgotten between them keep the pipelines); not
    the session's ``tiny_model``, which a test unloading the cache before this one leaves stale."""
    from mgtoolkit.models.loading import forget_settings

    first = mg.load_model("tiny")
    assert mg.load_model("tiny") is first
    forget_settings()
    assert mg.load_model("tiny") is first


def test_save_pretrained_round_trip_gives_the_same_waveform(tiny_model, tmp_path, fast):
    tiny_model.pipe.save_pretrained(str(tmp_path / "pipe"))
    original = mg.generate(PROMPT, seed=9, **fast)
    reloaded = mg.generate(PROMPT, seed=9, **{**fast, "model": str(tmp_path / "pipe")})
    assert reloaded.model_info["source"] == str(tmp_path / "pipe")
    assert np.array_equal(reloaded.waveform, original.waveform)


def test_a_request_object_is_accepted(base, fast):
    request = mg.GenerationRequest(
        prompt=PROMPT,
        negative_prompt="low quality, noise",
        seed=120,
        audio_length_in_s=1.0,
        num_inference_steps=3,
        model="tiny",
    )
    assert np.array_equal(mg.generate(request).waveform, base.waveform)


def test_timings_cover_each_stage(base):
    assert {"load_s", "text_s", "denoise_s", "decode_s", "total_s"} <= set(base.timings)
    assert all(v >= 0 for v in base.timings.values())


def test_musicldm_path_keeps_each_candidates_seed(fast):
    """MusicLDM gets the prompt strings and one call per candidate (it would re-rank a batch)."""
    kwargs = {**fast, "model": "tiny-musicldm"}
    clips = mg.generate(
        PROMPT, negative_prompt="noise", seed=3, num_waveforms_per_prompt=2, rank=False, **kwargs
    )
    assert clips[0].model_info["pipeline"] == "MusicLDMPipeline" and [c.seed for c in clips] == [3, 4]
    assert np.array_equal(
        mg.generate(PROMPT, negative_prompt="noise", seed=4, **kwargs).waveform, clips[1].waveform
    )
    assert _differs(mg.generate(PROMPT, negative_prompt="drums", seed=4, **kwargs), clips[1])


def test_generate_leaves_the_callers_paddle_random_stream_alone(fast):
    import paddle

    paddle.seed(77)
    expected = paddle.rand([4]).numpy()
    paddle.seed(77)
    tracker = paddle.Generator()
    entries = len(tracker.states_)
    mg.generate(PROMPT, seed=5, scheduler="euler-a", **fast)
    assert np.array_equal(paddle.rand([4]).numpy(), expected)
    assert len(tracker.states_) == entries  # no generator state left behind


def test_stochastic_sampler_is_still_owned_by_the_seed(fast):
    import paddle

    a = mg.generate(PROMPT, seed=5, scheduler="euler-a", **fast)
    paddle.seed(1)
    paddle.randn([9])
    b = mg.generate(PROMPT, seed=5, scheduler="euler-a", **fast)
    assert np.array_equal(a.waveform, b.waveform)


def test_generate_records_its_clips_in_the_history(fast):
    from mgtoolkit.notebook.history import HISTORY

    HISTORY.clear()
    clips = mg.generate(PROMPT, seed=8, num_waveforms_per_prompt=2, **fast)
    assert HISTORY.clips == clips
    HISTORY.add(clips)  # the same clips again (a panel recording them too) are not duplicated
    assert len(HISTORY) == 2


def test_the_task_itself_records_nothing(fast):
    """The history is fed by the shells (mg.generate, the panels), not by the task."""
    from mgtoolkit.notebook.history import HISTORY
    from mgtoolkit.tasks import text

    HISTORY.clear()
    clip = text.generate(PROMPT, seed=8, **fast)
    assert len(HISTORY) == 0
    assert mg.generate(PROMPT, seed=8, **fast).waveform.tolist() == clip.waveform.tolist()
    assert len(HISTORY) == 1


@pytest.mark.parametrize("seconds", [2.9999999999999996, 1.0000000000000002, 0.9999999])
def test_a_sliders_float_error_gives_whole_seconds(seconds, fast):
    """Browser sliders send 2.9999999999999996: the clip is round(seconds x rate) samples and says so."""
    clip = mg.generate(PROMPT, seed=3, **{**fast, "audio_length_in_s": seconds})
    assert clip.waveform.shape == (round(seconds * 16000),)
    assert clip.request.audio_length_in_s == round(seconds * 16000) / 16000


def test_below_one_latent_frame_is_our_error_not_ppdiffusers(fast):
    with pytest.raises(mg.InvalidInputError, match=r"^audio_length_in_s=0.02: must be at least 0.04 s"):
        mg.generate(PROMPT, seed=3, **{**fast, "audio_length_in_s": 0.02})


def test_cancel_does_not_copy_latents_without_a_callback(fast, monkeypatch):
    """The panels always pass cancel; with no callback, no step copies the latents to the host."""
    import paddle

    copies = []
    original = paddle.Tensor.numpy
    monkeypatch.setattr(
        paddle.Tensor, "numpy", lambda self, *a, **k: copies.append(self.shape) or original(self, *a, **k)
    )
    mg.generate(PROMPT, seed=3, cancel=threading.Event(), **fast)
    latent_copies = [s for s in copies if len(s) == 4 and s[1] == 8]
    assert latent_copies == []
