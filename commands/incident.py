"""Declare and run incidents: a channel, roles, status updates, a timeline and a postmortem draft.

Usage:
  /incident declare <sev> <title>
  /incident commander @user
  /incident role <name> @user
  /incident update <text>
  /incident status investigating|identified|monitoring|resolved
  /incident severity <sev>
  /incident note <text>
  /incident resolve [summary]
  /incident list [open|all]
  /incident timeline
  /incident postmortem
Examples:
  /incident declare sev2 Checkout errors on web
  /incident update Rolled back web to v1.4.1, watching error rate
"""

USAGE_HINT = "declare <sev> <title> | update <text> | status … | resolve"
