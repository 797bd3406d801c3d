"""Stage 1: time every part of the search space on a device into a latency table."""
