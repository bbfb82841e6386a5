"""Alerts: the `alerts:` configuration, durable ingest into a Redis Stream, delivery to Slack as one message per
alert group lifecycle (dedup, grouping, routing, silences), acknowledgements and statistics."""
