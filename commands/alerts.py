"""Firing alerts, acknowledgements, silences and alert statistics.

Usage:
  /alerts [list] [service=… severity=…]
  /alerts ack <id>
  /alerts resolve <id>
  /alerts silence <matchers> <duration> --reason "…"
  /alerts silences
  /alerts unsilence <id>
  /alerts stats [7d]
Examples:
  /alerts list severity=critical
  /alerts silence service=web 2h --reason "maintenance"
"""

USAGE_HINT = "[list | ack | resolve | silence | silences | stats]"
