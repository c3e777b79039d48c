"""Thin Prefect flows and the `tcmr` command: orchestration only, no domain logic."""
