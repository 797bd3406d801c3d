"""Hardware-aware BERT compression and deployment (NAS-BERT latency tables, search, export)."""

__version__ = "0.1.0"
