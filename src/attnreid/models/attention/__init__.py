"""Attention modules, one file per module; each docstring states its paper's equations."""
