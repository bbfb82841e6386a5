"""Deploy a service version to an environment, with approvals for production, locks and canary steps.

Usage:
  /deploy <service> <version> to <env> [--reason "…"] [--force]
  /deploy <service>@<version> <env>
  /deploy status [<service>]
  /deploy history <service> [<env>] [N]
  /deploy cancel <id>
  /deploy lock <env> [<service>] --reason "…" [--for 2h]
  /deploy unlock <env> [<service>]
  /deploy locks
Examples:
  /deploy web v1.4.2 to staging
  /deploy web@v1.4.2 production --reason "fix checkout"
"""

USAGE_HINT = "<service> <version> to <env> | status | history | lock | unlock"
