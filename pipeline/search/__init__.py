"""Stage 3: the best architecture under each latency budget, from the trained pools."""
