"""A rich progress bar showing samples/s and tokens/s while a stage runs."""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RateProgress:
    def __init__(self, description: str, console: Console | None = None):
        self.description = description
        self.console = console or Console(stderr=True)
        self.tokens = 0
        self.samples = 0
        self._progress: Progress | None = None
        self._task = None
        self._t0 = 0.0

    def start(self, total_samples: int, done_samples: int) -> None:
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rates]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self._task = self._progress.add_task(self.description, total=total_samples, completed=done_samples, rates="")
        self._t0 = time.perf_counter()
        self._progress.start()

    def advance(self, samples: int, tokens: int) -> None:
        self.samples += samples
        self.tokens += tokens
        if self._progress is None:
            return
        dt = max(time.perf_counter() - self._t0, 1e-9)
        rates = f"{self.samples / dt:,.1f} samples/s  {self.tokens / dt:,.0f} tok/s"
        self._progress.update(self._task, advance=samples, rates=rates)

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()
