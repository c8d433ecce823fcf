"""Fixtures shared by the runtime tests."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

WALK_SIZE = (240, 160)  # (width, height): small, so video tests stay fast


@pytest.fixture(scope="session")
def clean(shared_data: Path) -> np.ndarray:
    """The 47 real Vid4 'walk' frames as uint8 RGB, 240x160, stacked (47, 160, 240, 3)."""
    files = sorted((shared_data / "video" / "vid4_walk").glob("*.png"))
    assert len(files) == 47
    frames = [cv2.resize(cv2.imread(str(f)), WALK_SIZE, interpolation=cv2.INTER_AREA) for f in files]
    return np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in frames])
