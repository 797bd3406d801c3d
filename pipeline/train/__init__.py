"""Stage 2: the NAS-BERT supernet, trained block by block against the teacher, with progressive shrinking."""
