"""Listening like a musician: tempo, beats, key, loudness (:mod:`.describe`) and CLAP scores and tags (:mod:`.clap`)."""
