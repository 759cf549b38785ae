"""Scheduling: which upload goes to Marketo next, and when each batch is polled."""
