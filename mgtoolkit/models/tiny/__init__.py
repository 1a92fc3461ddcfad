"""Tiny models with random weights, built locally and reached through the normal loader.

``MGTOOLKIT_MODEL=tiny`` and the tests use them: :mod:`.pipelines` (AudioLDM, MusicLDM, AudioLDM 2),
:mod:`.clap`, :mod:`.clip` and :mod:`.llm` (writers and captioners), each built once from the configs
of :mod:`mgtoolkit.models.architectures` by :func:`.build.built_once` into the mgtoolkit cache.
"""
