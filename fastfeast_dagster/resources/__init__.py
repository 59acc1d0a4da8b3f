"""Dagster resources: the warehouse connection and the Postgres IO manager."""
