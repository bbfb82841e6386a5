"""Roll a service back to its last good version, through the same approval, lock and health path as a deploy.

Usage:
  /rollback <service> <env> [to <version>] [--reason "…"]
Examples:
  /rollback web production
  /rollback web staging to v1.4.1 --reason "bad migration"
"""

USAGE_HINT = "<service> <env> [to <version>] [--reason \"…\"]"
