"""The status of everything: health, versions, deploys in progress, incidents, firing alerts, who is on call.

Usage:
  /status
  /status <service> [<env>]
  /status slo [<service>]
Examples:
  /status
  /status web production
"""

USAGE_HINT = "[<service> [<env>] | slo [<service>]]"
