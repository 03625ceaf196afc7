"""fedlake: a federated, policy-driven data lake for open science."""

__version__ = "0.1.0"
__all__ = ["__version__"]
