"""On-call: rotation schedules and overrides."""
