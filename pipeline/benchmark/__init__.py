"""Stage 5: teacher, students and baselines measured on the device; the report."""
