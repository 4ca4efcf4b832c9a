"""What `confirm` and `train` say while they fit: a line per epoch of each configuration
(configuration k of N with its networks, epoch e of E, training windows per second, the
epoch's validation value, ETA), plain lines that read as well in a file under nohup as on a
terminal. They come through the training loop's `on_epoch` callback: models/ prints nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from optuna.trial import FrozenTrial

from models import OBJECTIVES, EpochResult
from search.study.progress import duration

Say = Callable[[str], None]
OnEpoch = Callable[[EpochResult], None]


class FitProgress:
    """The epoch lines of the configurations that `verb` fits one after the other (`each`);
    each line goes to `say` (None: silent). The ETA assumes the configurations left take as long
    an epoch as the current one, and every epoch planned (early stopping may end sooner)."""

    def __init__(
        self,
        say: Say | None,
        verb: str,
        objective: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.say = say
        self.verb = verb
        self.total = 0
        self.name = objective.split(",")[0].strip()
        self.metric = OBJECTIVES.get(self.name, ("loss", ""))[0]
        self.clock = clock
        self.mark = clock()  # the last epoch's end (or the start): the next one's start

    def each(self, trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, OnEpoch | None]]:
        """The trials to fit, one after the other, each with its `on_epoch`."""
        self.total = len(trials)
        self.mark = self.clock()
        return [(t, self.configuration(k, t.number)) for k, t in enumerate(trials, 1)]

    def configuration(self, k: int, trial: int) -> OnEpoch | None:
        """The `on_epoch` of configuration `k` (1-based) of `total`, the study's trial `trial`:
        its time counts from the end of the epoch before (the previous configuration's last)."""
        if self.say is None:
            return None
        say, start = self.say, [self.mark]

        def on_epoch(r: EpochResult) -> None:
            now = self.clock()
            if r.epoch == 1:
                start[0] = self.mark
            self.mark = now
            say(self.line(k, trial, r, (now - start[0]) / r.epoch))

        return on_epoch

    def line(self, k: int, trial: int, r: EpochResult, epoch_s: float) -> str:
        """Configuration `k`'s epoch `r`, its epochs having taken `epoch_s` seconds each."""
        planned = max(r.planned, r.epoch)
        left = planned - r.epoch + planned * (self.total - k)
        rate = r.windows / r.train_seconds if r.train_seconds > 0 else math.nan
        value = r.val.get(self.metric, math.nan)
        networks = len(r.members) or 1
        return (
            f"{self.verb}: trial {trial} ({k}/{self.total}, {networks} "
            f"network{'s' if networks > 1 else ''}) epoch {r.epoch}/{planned}: "
            f"{rate:,.0f} windows/s, validation {self.name} {value:.4g}, "
            f"{epoch_s:.1f}s an epoch, ETA {duration(epoch_s * left)}"
        )
