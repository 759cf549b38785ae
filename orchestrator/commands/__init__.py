"""Operator commands besides ``run``: submit, retry, status, migrate, and their output."""
