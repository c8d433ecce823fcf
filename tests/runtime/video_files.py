"""Reading a written video file back, frame by frame, for tests that compare outputs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame OpenCV decodes from `path` (8-bit BGR), in order; empty if it opens none."""
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames
