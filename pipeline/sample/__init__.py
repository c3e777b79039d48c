"""Synthetic sample data in the datasets' and base data's real on-disk formats."""
