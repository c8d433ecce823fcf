"""The project's one small error hierarchy.

CLIs catch `UnfoldError`, print one line and exit non-zero; library code raises, never exits.
"""

import sys
import traceback


class UnfoldError(Exception):
    """Base of every error this toolkit raises on purpose."""


class InputError(UnfoldError):
    """An input image, video, folder or argument that cannot be used."""


class CheckpointError(UnfoldError):
    """A checkpoint file that is missing, corrupt or from another model."""


class ManifestError(UnfoldError):
    """An artifacts manifest that is missing, malformed or does not match its files."""


class ExportError(UnfoldError):
    """Exporting a graph failed or its checks did not pass."""


class CalibrationError(UnfoldError):
    """Calibration data or INT8 quantisation failed."""


class EngineBuildError(UnfoldError):
    """A TensorRT engine could not be built or loaded."""


class BackendUnavailable(UnfoldError):
    """A requested backend or device is not installed or not present."""


class ShapeError(UnfoldError):
    """A tensor or frame shape the model or engine cannot take."""


class InferenceError(UnfoldError):
    """A backend failed while running a graph it had opened (out of memory, driver error)."""


def report_error(exc: UnfoldError, verbose: bool, status: int = 1) -> int:
    """What every CLI does with an UnfoldError: one line on stderr (with the traceback first under
    -v/--verbose); returns the exit status to hand back from main()."""
    if verbose:
        traceback.print_exc()
    print(f"error: {exc}", file=sys.stderr)
    return status
