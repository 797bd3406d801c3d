"""Students built from the trained supernet and finished by end-to-end distillation (search, export and
benchmark all build them)."""
