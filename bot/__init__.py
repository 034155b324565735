"""Quorum: a Slack app for cross-functional model development."""

# The one place the version is written: pyproject.toml reads it, `quorum --version` prints it.
__version__ = "0.1.0"
