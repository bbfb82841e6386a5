"""Backup engines (PostgreSQL, Redis, RDS snapshots) and backup storage (S3, a local folder)."""
