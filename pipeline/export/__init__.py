"""Stage 4: searched architectures -> deployable students, every artifact checked against PyTorch."""

EXPORT = "export.json"  # the record `export` writes per student and for the whole export; benchmark reads it
