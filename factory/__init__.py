"""reasoning-factory: make DeepSeek-R1-style reasoning data and train on it."""

__version__ = "0.1.0"
