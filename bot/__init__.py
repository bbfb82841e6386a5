"""The chatops engine: settings, the composition root, the web server, the Redis store and the domain services.

`bot` knows nothing of slash-command text (that is `commands/`) and reaches the outside world only through
`integrations/`.
"""
