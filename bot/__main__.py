"""`python -m bot`: the same entry point as the `chatops` command."""

from bot.shell.cli import main

raise SystemExit(main())
