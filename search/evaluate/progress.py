"""What `confirm` and `train` say while they fit: a line per epoch of each configuration
(configuration k of N with its networks, epoch e of E, training windows per second, the
epoch's validation value, ETA), and inside an epoch longer than a minute a line a minute
(the share of the epoch's windows trained, windows per second, ETA); plain lines that read
as well in a file under nohup as on a terminal. They come through the training loop's
`on_epoch` and `on_step` callbacks: models/ prints nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from optuna.trial import FrozenTrial

from models import OBJECTIVES, EpochResult, Step
from search.study.progress import duration

Say = Callable[[str], None]
OnEpoch = Callable[[EpochResult], None]


class FitProgress:
    """The epoch lines of the configurations that `verb` fits one after the other (`each`);
    each line goes to `say` (None: silent). The ETA assumes the configurations left take as long
    an epoch as the current one, and every epoch planned (early stopping may end sooner).
    Inside an epoch, a line every `every` seconds since the last line."""

    def __init__(
        self,
        say: Say | None,
        verb: str,
        objective: str,
        clock: Callable[[], float] = time.monotonic,
        every: float = 60.0,
    ) -> None:
        self.say = say
        self.verb = verb
        self.total = 0
        self.name = objective.split(",")[0].strip()
        self.metric = OBJECTIVES.get(self.name, ("loss", ""))[0]
        self.clock = clock
        self.every = every
        self.mark = clock()  # the last epoch's end (or the start): the next one's start
        self.said = self.mark  # the last line's time

    def each(self, trials: list[FrozenTrial]) -> list[tuple[FrozenTrial, ConfigLines | None]]:
        """The trials to fit, one after the other, each with its lines (its `on_epoch`)."""
        self.total = len(trials)
        self.mark = self.said = self.clock()
        return [(t, self.configuration(k, t.number)) for k, t in enumerate(trials, 1)]

    def configuration(self, k: int, trial: int) -> ConfigLines | None:
        """The lines of configuration `k` (1-based) of `total`, the study's trial `trial`:
        its time counts from the end of the epoch before (the previous configuration's last)."""
        return None if self.say is None else ConfigLines(self, k, trial)

    def head(self, k: int, trial: int, networks: int, epoch: int, planned: int) -> str:
        """`train: trial 3 (1/2, 3 networks) epoch 2/8`."""
        return (
            f"{self.verb}: trial {trial} ({k}/{self.total}, {networks} "
            f"network{'s' if networks > 1 else ''}) epoch {epoch}/{planned}"
        )

    def epochs_left(self, k: int, epoch: int, planned: int) -> int:
        """Whole epochs after `epoch` of configuration `k`: its own and the next ones'."""
        return planned - epoch + planned * (self.total - k)

    def line(self, k: int, trial: int, r: EpochResult, epoch_s: float) -> str:
        """Configuration `k`'s epoch `r`, its epochs having taken `epoch_s` seconds each."""
        planned = max(r.planned, r.epoch)
        rate = r.windows / r.train_seconds if r.train_seconds > 0 else math.nan
        value = r.val.get(self.metric, math.nan)
        eta = duration(epoch_s * self.epochs_left(k, r.epoch, planned))
        return (
            f"{self.head(k, trial, len(r.members) or 1, r.epoch, planned)}: "
            f"{rate:,.0f} windows/s, validation {self.name} {value:.4g}, "
            f"{epoch_s:.1f}s an epoch, ETA {eta}"
        )


class ConfigLines:
    """One configuration's lines: called with each epoch's result (fit's `on_epoch`), and
    `step` after each batch (fit's `on_step`), which says something at most every
    `FitProgress.every` seconds."""

    def __init__(self, fits: FitProgress, k: int, trial: int) -> None:
        self.fits, self.k, self.trial = fits, k, trial
        self.start = fits.mark  # this configuration's first epoch's start
        self.epoch_s = math.nan  # seconds an epoch so far (nan: none finished)

    def __call__(self, r: EpochResult) -> None:
        fits = self.fits
        now = fits.clock()
        if r.epoch == 1:
            self.start = fits.mark
        fits.mark = fits.said = now
        self.epoch_s = (now - self.start) / r.epoch
        assert fits.say is not None
        fits.say(fits.line(self.k, self.trial, r, self.epoch_s))

    def step(self, s: Step) -> None:
        fits = self.fits
        now = fits.clock()
        if now - fits.said < fits.every or s.trained <= 0:
            return
        if s.epoch == 1:
            self.start = fits.mark
        fits.said = now
        elapsed = now - fits.mark  # this epoch's, so far
        rate = s.trained * s.networks / elapsed if elapsed > 0 else math.nan
        epoch_s = self.epoch_s
        if not math.isfinite(epoch_s):  # the first epoch: its pace so far
            epoch_s = elapsed * s.per_epoch / s.trained
        this = elapsed * (s.per_epoch - s.trained) / s.trained
        left = fits.epochs_left(self.k, s.epoch, s.planned)
        assert fits.say is not None
        fits.say(
            f"{fits.head(self.k, self.trial, s.networks, s.epoch, s.planned)}: "
            f"{s.trained / s.per_epoch:.0%} of {s.per_epoch:,} windows, "
            f"{rate:,.0f} windows/s, ETA {duration(this + epoch_s * left)}"
        )
