"""Progress reporting for long loops: a rich bar with images/s and ETA, or silence."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Protocol


class Reporter(Protocol):
    def task(self, description: str, total: int) -> "Task": ...
    def message(self, text: str) -> None: ...


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...
    def close(self) -> None: ...


class _SilentTask:
    def advance(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


class SilentReporter:
    def task(self, description: str, total: int) -> _SilentTask:
        return _SilentTask()

    def message(self, text: str) -> None:
        pass


class _RichTask:
    def __init__(self, progress, task_id):
        self._progress, self._id = progress, task_id

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._id, n)

    def close(self) -> None:
        self._progress.update(self._id, visible=False)
        self._progress.remove_task(self._id)


class RichReporter:
    """Progress bars on stderr (images/s and ETA), messages above them."""

    def __init__(self, progress):
        self._progress = progress

    def task(self, description: str, total: int) -> _RichTask:
        return _RichTask(self._progress, self._progress.add_task(description, total=total))

    def message(self, text: str) -> None:
        self._progress.console.print(text)


@contextmanager
def rich_reporter() -> Iterator[RichReporter]:
    from rich.console import Console
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TaskProgressColumn, TextColumn,
                               TimeElapsedColumn, TimeRemainingColumn)

    class ImagesPerSecond(TextColumn):
        def __init__(self):
            super().__init__("")

        def render(self, task):
            from rich.text import Text

            speed = task.finished_speed or task.speed
            return Text(f"{speed:.2f} img/s" if speed else "-- img/s", style="cyan")

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
               ImagesPerSecond(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=False) as progress:
        yield RichReporter(progress)
