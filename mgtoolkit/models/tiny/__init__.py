"""Tiny models with random weights, built locally and reached through the normal loader."""
