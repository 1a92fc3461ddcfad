"""The models: presets and how a name resolves, weights, AudioLDM and its maths, captioners and writers."""
