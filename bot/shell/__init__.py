"""The process shell: what turns the engine into a running process. Entry points (`chatops` CLI, `chatops dev`),
settings from the environment, logging, the root configuration that gathers every domain's section, the
composition root that builds every service once and hands each what it needs (callbacks between domains
included), the aiohttp web server, heartbeats and `Deps`, the bag handed to commands.

Imports every layer below it; nothing in `bot` imports it (only `commands/`, for `Deps`).
"""
