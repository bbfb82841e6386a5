"""Backups against real PostgreSQL, Redis, an S3 server (SeaweedFS) and moto."""
