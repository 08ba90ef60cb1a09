"""Errors that reach the user.

Every problem the user can fix (a missing file, a wrong shape, an engine built for another GPU)
raises a :class:`DetnetError` subclass whose message says what was expected, what was found and
how to fix it. The CLI prints that message on one line and exits with code 2; a traceback is shown
only with ``--debug``.
"""

from __future__ import annotations


class DetnetError(Exception):
    """An error the user can act on; ``str(err)`` is the whole message."""

    exit_code = 2

    def __init__(self, message: str, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(message if hint is None else f"{message} ({hint})")


class InputError(DetnetError):
    """An input tensor or image has the wrong dtype, shape, layout or content."""


class ModelFileError(DetnetError):
    """A checkpoint, ONNX file, engine or sidecar is missing, corrupt, or of the wrong kind."""


class OutputExistsError(DetnetError):
    """An output file exists and ``--force`` was not given."""


class MissingDependencyError(DetnetError):
    """An optional dependency (TensorRT, pycuda, PyTriton, ...) is not installed."""


class IncompatibleError(DetnetError):
    """An artifact was made for another model, TensorRT version, GPU or calibration."""


class OutputError(DetnetError):
    """An output location cannot be used: not writable, no space, a file where a folder is needed,
    or one of the inputs."""
