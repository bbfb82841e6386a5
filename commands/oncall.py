"""Who is on call, the upcoming schedule, overrides and acknowledgement figures.

Usage:
  /oncall
  /oncall schedule <rotation> [2w]
  /oncall override <rotation> @user (for 4h | until <time>) [--reason "…"]
  /oncall overrides
  /oncall override cancel <id>
  /oncall acks [@user] [7d]
Examples:
  /oncall
  /oncall override primary @alice for 4h --reason "swap"
"""

USAGE_HINT = "[schedule | override | overrides | acks]"
