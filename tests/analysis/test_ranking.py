"""Ranking candidates with CLAP, and CLAP's zero-shot tags, on the tiny models (random weights)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

import mgtoolkit as mg
from mgtoolkit.analysis import clap as clap_tags
from mgtoolkit.errors import InvalidInputError
from mgtoolkit.models import clap as clap_model

PROMPT = "smooth jazz piano, relaxed lounge"
SEED = 40  # the tiny CLAP's order for seeds 40, 41, 42 is not seed order (checked below)


@pytest.fixture(scope="module")
def tiny_clap():
    return clap_model.load_clap("tiny", device="cpu")


@pytest.fixture(scope="module")
def unranked(tiny_model, fast):
    return mg.generate(PROMPT, seed=SEED, num_waveforms_per_prompt=3, rank=False, **fast)


@pytest.fixture(scope="module")
def ranked(tiny_model, fast):
    return mg.generate(PROMPT, seed=SEED, num_waveforms_per_prompt=3, **fast)


def test_rank_false_keeps_seed_order_and_scores_nothing(unranked):
    assert [c.seed for c in unranked] == [SEED, SEED + 1, SEED + 2]
    assert all(c.score is None and "score" not in c.metadata() for c in unranked)


def test_ranking_reorders_by_the_clap_score(ranked, unranked, tiny_clap):
    expected = clap_model.similarity(tiny_clap, [PROMPT], [c.waveform for c in unranked], 16000)[:, 0]
    best_first = [unranked[i].seed for i in np.argsort(-expected, kind="stable")]
    assert best_first != [c.seed for c in unranked]  # this seed makes a real reordering
    assert [c.seed for c in ranked] == best_first
    scores = [c.score for c in ranked]
    assert scores == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, np.sort(expected)[::-1], atol=1e-5)
    assert [c.extra["rank"] for c in ranked] == [1, 2, 3] and ranked[0].extra["scored_by"] == "tiny"
    assert ranked[0].timings["rank_s"] > 0 and "rank_s" not in unranked[0].timings


def test_each_ranked_clip_keeps_its_own_seed(ranked, unranked):
    by_seed = {c.seed: c.waveform for c in unranked}
    for clip in ranked:
        np.testing.assert_array_equal(clip.waveform, by_seed[clip.seed])


def test_scores_are_recorded_in_the_sidecar_and_history(ranked, tmp_path):
    from mgtoolkit.notebook.history import HISTORY

    best = ranked[0]
    sidecar = json.loads(best.save(tmp_path).with_suffix(".json").read_text())
    assert sidecar["score"] == pytest.approx(best.score) and sidecar["extra"]["rank"] == 1
    assert f"score {best.score:.3f}" in best.summary()
    assert all(any(c is h for h in HISTORY.clips) for c in ranked)  # mg.generate recorded them


def test_show_marks_the_best_take(ranked):
    from mgtoolkit.notebook.display import clips_html

    markup = clips_html(ranked, plots=False)
    assert f"<b>#1 · best · score {ranked[0].score:.3f}</b>" in markup
    assert f"<b>#2 · score {ranked[1].score:.3f}</b>" in markup and markup.count("<b>#1 · best") == 1
    assert "#2 · best" not in markup and "#3 · best" not in markup


def test_a_single_clip_is_not_scored(tiny_model, fast):
    assert mg.generate(PROMPT, seed=SEED, **fast).score is None


def test_pipeline_with_an_audio_tower_scores_with_its_own_clap(tiny_clap, unranked):
    """MusicLDM / AudioLDM 2 carry a full ClapModel: that one is used, nothing else is loaded."""
    from mgtoolkit.tasks.text import rank_candidates

    pipe = SimpleNamespace(
        text_encoder=tiny_clap.model,
        tokenizer=tiny_clap.tokenizer,
        feature_extractor=tiny_clap.feature_extractor,
    )
    loaded = SimpleNamespace(spec=SimpleNamespace(is_tiny=False, name="musicldm"), pipe=pipe)
    clap_model.release_clap()  # a load would now have to build it again; the pipeline's must be used
    clips = rank_candidates(list(unranked), loaded)
    assert clips[0].extra["scored_by"] == "musicldm (its own CLAP)"
    assert clap_model._load_cached.cache_info().currsize == 0
    assert [c.score for c in clips] == sorted((c.score for c in clips), reverse=True)


def test_audioldm_without_audio_tower_has_no_pipeline_clap(tiny_model):
    assert clap_model.pipeline_clap(tiny_model.pipe) is None


def test_audio_embedding_is_deterministic_and_leaves_numpy_random_alone(tiny_clap):
    wave = np.random.default_rng(0).standard_normal(5 * 16000).astype(np.float32) * 0.1
    np.random.seed(5)  # noqa: NPY002 - the global stream a feature extractor could disturb
    expected = np.random.rand(3)  # noqa: NPY002
    np.random.seed(5)  # noqa: NPY002
    a = clap_model.audio_embeddings(tiny_clap, [wave], 16000)
    assert np.array_equal(np.random.rand(3), expected)  # noqa: NPY002
    np.testing.assert_array_equal(a, clap_model.audio_embeddings(tiny_clap, [wave], 16000))
    assert a.shape == (1, 32) and np.linalg.norm(a) == pytest.approx(1.0, abs=1e-5)


def test_tags_come_from_the_clap_model_and_depend_on_the_audio(tiny_clap):
    sr = 16000
    t = np.arange(3 * sr) / sr
    noise = np.random.default_rng(1).standard_normal(3 * sr).astype(np.float32) * 0.2
    tone = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    labels = {"mood": ["calm", "energetic", "dark"]}
    tags_noise, name = clap_tags.zero_shot_tags(noise, sr, labels, clap="tiny")
    tags_tone, _ = clap_tags.zero_shot_tags(tone, sr, labels, clap="tiny")
    assert name == "tiny"
    p_noise, p_tone = dict(tags_noise["mood"]), dict(tags_tone["mood"])
    assert set(p_noise) == {"calm", "energetic", "dark"} and sum(p_noise.values()) == pytest.approx(1.0)
    assert (
        max(abs(p_noise[k] - p_tone[k]) for k in p_noise) > 1e-6
    )  # the audio matters (random weights: a little)
    # ... and they are exactly CLAP's softmax over its audio-text logits.
    audio = clap_model.audio_embeddings(tiny_clap, [noise], sr)[0]
    text = clap_model.text_embeddings(tiny_clap, [clap_tags.TAG_TEMPLATE.format(k) for k in labels["mood"]])
    logits = np.exp(float(tiny_clap.model.logit_scale_a.numpy().reshape(-1)[0])) * (text @ audio)
    want = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    np.testing.assert_allclose([p_noise[k] for k in labels["mood"]], want, rtol=1e-4)


@pytest.mark.parametrize(
    "labels", [{}, {"mood": []}, {"mood": ["  "]}, {"mood": "calm"}, {"mood": ["calm", 3]}, ["calm"]]
)
def test_empty_or_odd_label_lists_are_one_line_errors(labels):
    with pytest.raises(InvalidInputError, match=r"^labels=.*; give each category at least one label") as err:
        clap_tags.check_labels(labels)
    assert "\n" not in str(err.value)


def test_unknown_clap_name_is_a_one_line_error():
    with pytest.raises(InvalidInputError, match="^clap='nope': is not a known CLAP model"):
        clap_model.resolve_clap("nope")


@pytest.mark.parametrize("pickled", [False, True], ids=["safetensors", "bin"])
def test_laion_clap_as_the_hub_ships_it_loads_from_the_hf_cache(tiny_clap, tmp_path, monkeypatch, pickled):
    """The default CLAP is found in the Hugging Face cache in torch layout and converted once (no
    download, no unpickling): here the tiny CLAP's weights stand in for laion's."""
    from fixtures.hub_layouts import write_hf_cache, write_transformers_folder
    from ppdiffusers.transformers import ClapModel

    from mgtoolkit.models.tiny.clap import tiny_clap_dir

    torch_folder = write_transformers_folder(tiny_clap_dir(), tmp_path / "torch", ClapModel, bin=pickled)
    assert (
        not list(torch_folder.glob("*.safetensors"))
        if pickled
        else list(torch_folder.glob("model.safetensors"))
    )
    write_hf_cache(torch_folder, tmp_path / "hub", "laion/clap-htsat-unfused")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path / "cache"))  # where the converted copy goes
    wave = np.random.default_rng(3).standard_normal(3 * 16000).astype(np.float32) * 0.1
    clap_model.release_clap()
    try:
        loaded = clap_model.load_clap(device="cpu")  # the default: laion/clap-htsat-unfused
        assert loaded.name == "clap-htsat-unfused"
        got = clap_model.similarity(loaded, ["calm piano", "drums"], [wave], 16000)
    finally:
        clap_model.release_clap()
    want = clap_model.similarity(tiny_clap, ["calm piano", "drums"], [wave], 16000)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert list((tmp_path / "cache" / "converted").iterdir())  # converted once, into the cache


def test_no_clap_to_rank_with_keeps_the_clips_in_seed_order(tiny_model, monkeypatch):
    """Offline with no CLAP, the candidates already made are returned (seed order) with a note."""
    from mgtoolkit.tasks import text

    def offline(**kwargs):
        raise mg.ModelUnavailableError("model='laion/clap-htsat-unfused': could not fetch it (offline)")

    monkeypatch.setattr(clap_model, "load_clap", offline)
    clips = [SimpleNamespace(seed=s, timings={}) for s in (5, 6, 7)]
    with pytest.warns(mg.errors.MgtoolkitWarning, match="^candidates kept in seed order: no CLAP model"):
        kept = text.rank_candidates(clips, tiny_model)
    assert kept is clips


@pytest.mark.slow
def test_clap_in_low_memory_mode_scores_the_same_with_one_tower_in_memory(tiny_clap, monkeypatch, tmp_path):
    from ppdiffusers.transformers import ClapModel

    from mgtoolkit.models.tiny.clap import tiny_clap_dir

    wave = np.random.default_rng(5).standard_normal(16000 * 3).astype(np.float32) * 0.1
    texts = ["a piano", "drums and bass", "rain on a roof"]
    plain = clap_model.LoadedClap("plain", ClapModel.from_pretrained(str(tiny_clap_dir())), tiny_clap.tokenizer,
                                  tiny_clap.feature_extractor)  # fmt: skip
    plain.model.eval()
    want = clap_model.similarity(plain, texts, [wave], 16000)
    np.testing.assert_array_equal(clap_model.similarity(tiny_clap, texts, [wave], 16000), want)
    monkeypatch.setenv("MGTOOLKIT_LOW_MEMORY", "1")
    monkeypatch.setenv("MGTOOLKIT_CACHE", str(tmp_path))
    clap_model.release_clap()
    try:
        small = clap_model.load_clap("tiny", device="cpu")
        swapper = small.model._mgtoolkit_lowmem
        assert sorted(swapper.stages) == ["clap_audio", "clap_text"]
        assert all(not p._is_initialized() for p in small.model.audio_model.parameters())
        np.testing.assert_array_equal(clap_model.similarity(small, texts, [wave], 16000), want)
        assert swapper.resident == "clap_text"  # the audio tower was released when the text tower ran
        assert all(not p._is_initialized() for p in small.model.audio_model.parameters())
        tags, _ = clap_tags.zero_shot_tags(wave, 16000, clap="tiny")
        monkeypatch.setenv("MGTOOLKIT_LOW_MEMORY", "0")
        clap_model.release_clap()
        assert clap_tags.zero_shot_tags(wave, 16000, clap="tiny")[0] == tags
        assert not list(tmp_path.glob("weights/*"))  # read back from the CLAP folder: no stash
    finally:
        clap_model.release_clap()
