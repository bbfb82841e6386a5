"""Run, list, verify and restore backups of PostgreSQL, Redis and RDS, and see the schedule's results.

Usage:
  /backup run <target>
  /backup list <target> [N]
  /backup show <id>
  /backup verify <target> [<id>]
  /backup restore <target> <id> [into <dsn-env>]
Examples:
  /backup run appdb
  /backup restore appdb 20261123-020000-appdb
"""

USAGE_HINT = "run | list | show | verify | restore …"
