"""Deploys and rollbacks: configuration, the state machine, policy (roles, freezes, approvals), the Redis store,
the engine that runs providers and health gates, and the Block Kit that shows a deploy as one message."""
