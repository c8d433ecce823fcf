"""Prior reuse across video frames: the DR-LDM prior of one frame serves the next few.

The prior graph (the latent encoder and the whole DDIM sampler) turns a stage's v into a small
vector z per frame (batch x prior_dim). Consecutive video frames show nearly the same scene, so
their priors nearly agree; `PriorCache(n)` lets the pipeline reuse the z of the frame that
computed it for up to `n` following frames and skip the prior graph on those.

A frame recomputes the priors (a miss) when:
- there is no complete entry yet, or the frame needs a stage the entry lacks;
- the entry is stale: it has already served `max_frames` following frames;
- the frame size (the padded graph input, batch included) changed;
- the scene changed: the mean absolute difference between a small grey thumbnail of this frame
  and that of the frame that computed the priors exceeds `scene_threshold` (intensities in
  [0, 1]). The thumbnail averages blocks of pixels, which also averages sensor noise away, so
  noisy frames of one scene stay well below the default threshold while a cut goes far above
  it (figures at DEFAULT_SCENE_THRESHOLD).

Use one cache per video stream, from the one thread that runs the pipeline. The pipeline takes
one, so this is a core runtime module; runtime/video/ makes one per stream.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from runtime.errors import InputError

# Thumbnail side in pixels: small enough to cost nothing next to the graphs, large enough that
# a cut to another scene changes it clearly.
THUMBNAIL_SIZE = 32
# Mean absolute thumbnail difference (in [0, 1]) above which a frame counts as a new scene.
# Measured on 320x240 centre crops: consecutive frames of the real clips differ by 0.01-0.04
# (sigma-25 noise adds under 0.003), frames 8 apart in the fast-moving Vid4 "walk" by 0.09-0.14,
# cuts between the two Vid4 clips by >= 0.23, and 99% of the pairs of unrelated CBSD68 photos
# by more than 0.10. So 0.10 catches nearly every cut and also refreshes the priors once fast
# motion has changed much of the picture.
DEFAULT_SCENE_THRESHOLD = 0.10

MISS_EMPTY = "empty"
MISS_STALE = "stale"
MISS_SIZE = "size"
MISS_SCENE = "scene"


def thumbnail(y: np.ndarray) -> np.ndarray:
    """Grey thumbnails (N, THUMBNAIL_SIZE, THUMBNAIL_SIZE) of padded frames (N, 3, H, W), by area averaging."""
    grey = y.mean(axis=1, dtype=np.float32)
    size = (THUMBNAIL_SIZE, THUMBNAIL_SIZE)
    return np.stack([cv2.resize(g, size, interpolation=cv2.INTER_AREA) for g in grey])


def scene_difference(a: np.ndarray, b: np.ndarray) -> float:
    """The scene-change measure: mean absolute difference of two thumbnails, worst frame of the batch."""
    return float(np.abs(a - b).mean(axis=(1, 2)).max())


@dataclass
class _Entry:
    shape: tuple[int, ...]  # the padded input (N, 3, H, W) that computed the priors
    thumb: np.ndarray
    priors: dict[int, np.ndarray] = field(default_factory=dict)  # stage -> z (N, prior_dim), host
    served: int = 0  # following frames that reused these priors


class PriorCache:
    """Reuses each stage's prior z for up to `max_frames` frames after the one that computed it.

    `max_frames=0` turns reuse off (every frame computes its priors) but still counts frames.
    Counters: `hits` (frames that reused priors), `misses` (frames that computed them),
    `scene_cuts` (misses caused by a scene change), and `misses_by_reason`.
    """

    def __init__(self, max_frames: int, scene_threshold: float = DEFAULT_SCENE_THRESHOLD) -> None:
        if isinstance(max_frames, bool) or not isinstance(max_frames, int) or max_frames < 0:
            raise InputError(f"prior reuse needs max_frames >= 0, got {max_frames!r}")
        if not scene_threshold > 0:
            raise InputError(f"scene_threshold must be > 0, got {scene_threshold}")
        self.max_frames = max_frames
        self.scene_threshold = float(scene_threshold)
        self.hits = 0
        self.misses_by_reason = {MISS_EMPTY: 0, MISS_STALE: 0, MISS_SIZE: 0, MISS_SCENE: 0}
        self.last_difference: float | None = None  # the scene measure of the latest frame, when compared
        self._entry: _Entry | None = None

    @property
    def misses(self) -> int:
        return sum(self.misses_by_reason.values())

    @property
    def scene_cuts(self) -> int:
        return self.misses_by_reason[MISS_SCENE]

    @property
    def frames(self) -> int:
        return self.hits + self.misses

    def clear(self) -> None:
        """Forget the cached priors (the next frame recomputes); the counters stay."""
        self._entry = None

    def lookup(self, y: np.ndarray, stages: Sequence[int]) -> dict[int, np.ndarray] | None:
        """Called by the pipeline once per frame (batch) with its padded input (N, 3, H, W) and
        the stages it will run. Returns stage -> z to reuse (a hit), or None (a miss): then the
        pipeline runs the prior graphs and hands each z to `store`."""
        thumb = thumbnail(y)
        reason = self._miss_reason(tuple(y.shape), thumb, stages)
        if reason is None:
            assert self._entry is not None
            self._entry.served += 1
            self.hits += 1
            return self._entry.priors
        self.misses_by_reason[reason] += 1
        self._entry = _Entry(tuple(y.shape), thumb)
        return None

    def store(self, stage: int, z: np.ndarray) -> None:
        """Keep the prior z that the frame just looked up computed for `stage`."""
        if self._entry is None:
            raise InputError("PriorCache.store called before lookup")
        self._entry.priors[stage] = np.array(z, dtype=np.float32, copy=True)

    def _miss_reason(self, shape: tuple[int, ...], thumb: np.ndarray, stages: Sequence[int]) -> str | None:
        self.last_difference = None
        entry = self._entry
        if entry is None or any(s not in entry.priors for s in stages):
            return MISS_EMPTY
        if shape != entry.shape:
            return MISS_SIZE
        self.last_difference = scene_difference(thumb, entry.thumb)
        if self.last_difference > self.scene_threshold:
            return MISS_SCENE
        if entry.served >= self.max_frames:
            return MISS_STALE
        return None

    def to_dict(self) -> dict[str, object]:
        return {
            "max_frames": self.max_frames,
            "scene_threshold": self.scene_threshold,
            "hits": self.hits,
            "misses": self.misses,
            "scene_cuts": self.scene_cuts,
            "misses_by_reason": dict(self.misses_by_reason),
        }

    def format(self) -> str:
        """One line for a run summary."""
        rate = f"{100.0 * self.hits / self.frames:.0f}%" if self.frames else "n/a"
        return (
            f"prior       reused on {self.hits} frames, computed on {self.misses} ({rate} reused; up to "
            f"{self.max_frames} frames each, {self.scene_cuts} scene cuts at threshold {self.scene_threshold:g})"
        )
