"""User-facing errors: the CLI prints them as one line and exits 1, never a traceback."""


class PipelineError(Exception):
    """A problem the user can fix (bad input, missing file, absent device)."""


class DeviceUnavailable(PipelineError):
    """The requested device is not present on this machine; the message names what is missing."""


class ExportMismatch(PipelineError):
    """An exported artifact does not reproduce the PyTorch model's outputs."""
