"""The platform: domain-neutral machinery every domain stands on. The Redis client and store, keys, locks,
the leader scheduler, background tasks, the Slack Web API client and posting, metrics, permissions and
usergroups, the audit log, people, approvals, cron expressions, batching and user-facing errors.

Imports nothing from the shell or the domains (import-linter contract in pyproject.toml).
"""
