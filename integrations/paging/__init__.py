"""Paging services outside Slack that wake people up: PagerDuty (Events API v2 out, v3 webhooks in)."""
