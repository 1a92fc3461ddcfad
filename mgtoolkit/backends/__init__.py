"""Model backends. Each module imports paddle and friends inside its functions only."""
