"""Backups: configuration, records, retention, rendering and the service that runs them."""
