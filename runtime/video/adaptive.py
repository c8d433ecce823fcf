"""Latency-adaptive depth: run fewer unfolding stages when the real-time loop falls behind.

Every stage output x_k of the unfolded model is a valid image (each is trained against the
ground truth), so a loop that cannot keep up can trade some quality for speed by running the
first k stages instead of dropping frames. `DepthController` is the loop's Controller
(runtime/video/loop.py): after each restored frame it is told the latency and the queue depth,
and it sets `stages`, which the processing function passes to `Pipeline.restore(stages=...)`.

Rules, with hysteresis so that the depth does not flip every frame:
- a frame is *late* when its latency exceeds `budget_s` or more than `max_queue` frames wait;
  after `down_after` late frames in a row the depth drops by one (not below `min_stages`);
- a frame has *headroom* when nothing waits and its latency scaled to one more stage
  (latency x (k + 1) / k, since each stage costs about the same) stays under
  `headroom x budget_s`; after `up_after` such frames in a row the depth rises by one;
- any other frame resets both runs, and so does every change of depth;
- a rise that is undone by a drop within `up_after` frames doubles the wait before the next
  rise (up to `max_up_after`), so a depth that the device cannot sustain is not retried every
  few frames; a full `up_after` run at a depth without a drop restores the original wait.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import InputError


class DepthController:
    """Chooses how many of `max_stages` stages to run per frame to stay within `budget_s` per frame."""

    def __init__(
        self,
        max_stages: int,
        budget_s: float,
        min_stages: int = 1,
        down_after: int = 2,
        up_after: int = 8,
        headroom: float = 0.9,
        max_queue: int = 1,
        max_up_after: int = 128,
    ) -> None:
        if isinstance(max_stages, bool) or not isinstance(max_stages, int) or max_stages < 1:
            raise InputError(f"max_stages must be an integer >= 1, got {max_stages!r}")
        if not 1 <= min_stages <= max_stages:
            raise InputError(f"min_stages must be between 1 and max_stages={max_stages}, got {min_stages}")
        if not budget_s > 0:
            raise InputError(f"the latency budget must be > 0 seconds, got {budget_s}")
        if down_after < 1 or up_after < 1 or max_up_after < up_after:
            raise InputError("down_after and up_after must be >= 1, and max_up_after >= up_after")
        if not 0 < headroom <= 1:
            raise InputError(f"headroom must be in (0, 1], got {headroom}")
        if max_queue < 0:
            raise InputError(f"max_queue must be >= 0, got {max_queue}")
        self.max_stages = max_stages
        self.min_stages = min_stages
        self.budget_s = float(budget_s)
        self.down_after = down_after
        self.base_up_after = up_after
        self.up_after = up_after  # the current wait before a rise (grows after failed rises)
        self.max_up_after = max_up_after
        self.headroom = headroom
        self.max_queue = max_queue
        self.stages = max_stages
        self.frames_at_depth: dict[int, int] = {k: 0 for k in range(min_stages, max_stages + 1)}
        self.changes = 0
        self._late = 0
        self._easy = 0
        self._since_change = 0
        self._rose = False  # the latest change was a rise

    def on_latency(self, seconds: float, queue_depth: int) -> None:
        """The loop's Controller hook: `seconds` of latency for a frame that ran at `self.stages`."""
        k = self.stages
        self.frames_at_depth[k] += 1
        self._since_change += 1
        late = seconds > self.budget_s or queue_depth > self.max_queue
        easy = queue_depth == 0 and seconds * (k + 1) / k <= self.headroom * self.budget_s
        self._late = self._late + 1 if late else 0
        self._easy = self._easy + 1 if easy and k < self.max_stages else 0
        if self._rose and self._since_change >= self.up_after:
            self.up_after = self.base_up_after  # the rise held: rises are cheap to try again
            self._rose = False
        if self._late >= self.down_after and k > self.min_stages:
            if self._rose and self._since_change < self.up_after:
                self.up_after = min(2 * self.up_after, self.max_up_after)  # the rise failed: wait longer
            self._change(k - 1, rose=False)
        elif self._easy >= self.up_after:
            self._change(k + 1, rose=True)

    def _change(self, stages: int, rose: bool) -> None:
        self.stages = stages
        self.changes += 1
        self._late = self._easy = self._since_change = 0
        self._rose = rose

    @property
    def frames(self) -> int:
        return sum(self.frames_at_depth.values())

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_stages": self.max_stages,
            "budget_ms": 1000.0 * self.budget_s,
            "stages_now": self.stages,
            "changes": self.changes,
            "frames_at_depth": {str(k): n for k, n in self.frames_at_depth.items()},
        }

    def format(self) -> str:
        """One line for a run summary: frames per depth."""
        counts = ", ".join(f"{k}: {n}" for k, n in sorted(self.frames_at_depth.items(), reverse=True))
        return (
            f"depth       frames per stage count {{{counts}}}, {self.changes} changes "
            f"(budget {1000.0 * self.budget_s:.1f} ms per frame)"
        )
