"""Incidents: declare, run and resolve incidents in their own Slack channel, with a timeline in Redis, pages through
the alert and escalation machinery, and a postmortem draft."""
