"""The chatops engine, in layers (docs/architecture.md): `shell` (entry points, settings, the composition root,
the web server) above the domains (`incidents`, `status`, `backups`, then `oncall`, then `alerts`, `deploys`)
above `text` (Block Kit, the humaniser) and `platform` (Redis store, scheduler, Slack client, permissions, ...).

`bot` knows nothing of slash-command text (that is `commands/`) and reaches the outside world only through
`integrations/`. `emulator` is the Slack stand-in for `chatops dev` and the tests, apart from the rest.
"""
