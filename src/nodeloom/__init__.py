"""nodeloom: a self-hosted engine for generative-image workflows."""

__version__ = "0.1.0"
