"""What an evaluation could not read, counted once for every task: a metric is never reported over a
smaller set than the one asked for without saying so, and not at all past a threshold.

Every runner reads its data through `eval_loader`, whose batches list their unreadable samples in
`batch["skipped"]` (see `vlzoo.core.data.collate`). While a *skip scope* is open, the loader counts them
into its `SkipLedger` and, each time it has been read to the end, stops the evaluation with a `DataError`
listing example files and reasons once more than `max_rate` of the samples were skipped. The reports
(`report_metrics`, `write_report`, `print_skip_note`) and the metrics a runner returns carry the count, the
rate and the examples.

The scope is opened in one place for every task, `EvalTask.run` (with `--max-skip-rate`), and for a runner
called from Python by `@evaluation_runner`, which adds the `max_skip_rate` keyword. A runner called inside
another's scope (the medical 2D retrieval is the core's) counts into that scope: one task, one tally.

>>> with skip_scope(0.2) as skips:
...     metrics = evaluate_retrieval("clip-vit-tiny", data="pairs.csv")
>>> skips.skipped, skips.seen
(3, 20)
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from vlzoo.core.data import SkipCounter
from vlzoo.core.errors import ConfigError, DataError

__all__ = [
    "DEFAULT_MAX_SKIP_RATE",
    "SkipLedger",
    "active_skips",
    "evaluation_runner",
    "skip_scope",
    "with_skips",
]

DEFAULT_MAX_SKIP_RATE = 0.01  # the training threshold too (`SkipCounter.check`)
MAX_EXAMPLES = 10  # files named in a report or an error: enough to see a pattern, short enough to read


def _counter() -> SkipCounter:
    return SkipCounter(max_examples=MAX_EXAMPLES)


@dataclass
class SkipLedger:
    """The skipped samples of one evaluation task, over every loader it read."""

    max_rate: float = DEFAULT_MAX_SKIP_RATE
    counter: SkipCounter = field(default_factory=_counter)

    @property
    def seen(self) -> int:
        return self.counter.seen

    @property
    def skipped(self) -> int:
        return self.counter.skipped

    def count(self, batch: Mapping[str, Any]) -> None:
        """Adds a collated batch: its kept samples (`batch["id"]`) and its skipped ones."""
        self.counter.update_from_batch(batch)

    def check(self) -> None:
        """Raises `DataError` naming example files when more than `max_rate` of the samples were skipped."""
        if self.counter.rate <= self.max_rate:
            return
        raise DataError(
            f"{self.skipped} of {self.seen} samples ({self.counter.rate:.1%}) could not be read, more than the "
            f"{self.max_rate:.1%} allowed (--max-skip-rate {self.max_rate:g}): the metrics would be over a "
            f"smaller set than the one asked for. Fix or remove these files, or raise --max-skip-rate:\n"
            + self._examples()
        )

    def summary(self) -> dict[str, Any]:
        """What every report carries: samples seen, skipped, the rate and `{path, reason}` examples; empty
        when no data was read (a task that reads none through `eval_loader` has nothing to say)."""
        if self.seen == 0:
            return {}
        return {
            "samples_seen": self.seen,
            "skipped": self.skipped,
            "skip_rate": self.counter.rate,
            "skipped_examples": [{"path": p, "reason": r} for p, r in self.counter.examples],
        }

    def note(self) -> str | None:
        """The line under a report's table: how many of how many samples were skipped and which, or that
        none were; None when no data was read."""
        if self.seen == 0:
            return None
        if self.skipped == 0:
            return f"all {self.seen} samples read, none skipped"
        return (
            f"{self.skipped} of {self.seen} samples skipped ({self.counter.rate:.1%}), the metrics are over "
            f"the other {self.seen - self.skipped}:\n" + self._examples()
        )

    def _examples(self) -> str:
        lines = [f"  {path}: {reason}" for path, reason in self.counter.examples]
        more = self.skipped - len(lines)
        return "\n".join(lines + ([f"  ... and {more} more"] if more > 0 else []))


_ACTIVE: ContextVar[SkipLedger | None] = ContextVar("vlzoo_eval_skips", default=None)


def active_skips() -> SkipLedger | None:
    """The ledger of the evaluation running now, if any."""
    return _ACTIVE.get()


def check_rate(max_rate: float) -> float:
    if isinstance(max_rate, bool) or not isinstance(max_rate, int | float) or not 0 <= max_rate <= 1:
        raise ConfigError(f"max_skip_rate must be a fraction in [0, 1] (0.01 = 1%), got {max_rate!r}")
    return float(max_rate)


@contextmanager
def skip_scope(max_rate: float | None = None) -> Iterator[SkipLedger]:
    """Counts the skipped samples of what runs inside. Without `max_rate`, a scope already open is
    joined (a runner called by another runner counts into its caller's tally), else one is opened with
    `DEFAULT_MAX_SKIP_RATE`; with it, a new scope is opened."""
    active = _ACTIVE.get()
    if active is not None and max_rate is None:
        yield active
        return
    ledger = SkipLedger(DEFAULT_MAX_SKIP_RATE if max_rate is None else check_rate(max_rate))
    token = _ACTIVE.set(ledger)
    try:
        yield ledger
    finally:
        _ACTIVE.reset(token)


def with_skips(metrics: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `metrics` with the active ledger's `summary()` (its count replaces a runner's own
    `skipped`: the ledger saw every loader the task read)."""
    ledger = _ACTIVE.get()
    return {**metrics, **(ledger.summary() if ledger is not None else {})}


Runner = TypeVar("Runner", bound=Callable[..., Mapping[str, Any]])


def evaluation_runner(runner: Runner) -> Runner:
    """Marks an evaluation runner: it takes `max_skip_rate` (default: the caller's scope, else
    `DEFAULT_MAX_SKIP_RATE`), runs in a skip scope and returns its metrics `with_skips`."""

    @functools.wraps(runner)
    def run(*args: Any, max_skip_rate: float | None = None, **kwargs: Any) -> dict[str, Any]:
        with skip_scope(max_skip_rate):
            return with_skips(runner(*args, **kwargs))

    signature = inspect.signature(runner)
    extra = inspect.Parameter("max_skip_rate", inspect.Parameter.KEYWORD_ONLY, default=None)
    params = list(signature.parameters.values())
    at = next((i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_KEYWORD), len(params))
    run.__signature__ = signature.replace(parameters=[*params[:at], extra, *params[at:]])  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]
