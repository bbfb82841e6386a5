"""The Slack surface: one module per slash command with its interactive actions, and the registry of them."""
