"""The outside world behind one small Protocol per kind. Imports nothing from `bot` or `commands`."""
