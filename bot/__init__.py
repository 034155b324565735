"""Quorum: a Slack app for cross-functional model development."""
