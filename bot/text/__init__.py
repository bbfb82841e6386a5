"""Text for people: Block Kit builders, the one escaping rule for text that reaches Slack, and the one
humaniser for durations and counts. Pure functions.

Imports nothing from the shell, the domains or the platform (import-linter contract in pyproject.toml).
"""
