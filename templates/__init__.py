"""Jinja2 templates of every message, modal and Home view (Block Kit JSON) and export format."""
