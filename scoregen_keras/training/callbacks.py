"""Keras callbacks of a training run: metrics log, checkpoints, sample previews, progress, SIGINT.

`fit` runs one epoch over the remaining steps, so every callback turns Keras' batch index into the
run's global step as ``initial_step + batch + 1``. Callbacks touch ``self.model`` only when they
need the weights (checkpoints, previews, the learning rate): on JAX that forces a state sync.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import keras

METRICS_DIGITS = 6
"""Significant digits of the floats written to metrics.jsonl."""


def _round(value: float) -> float:
    """A float rounded to METRICS_DIGITS significant digits, for a readable log."""
    return float(f"{value:.{METRICS_DIGITS}g}")


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate at its current iteration (schedules evaluated)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class StepCallback(keras.callbacks.Callback):
    """Base class: knows the run's global step of the batch that just ended."""

    def __init__(self, initial_step: int) -> None:
        """Steps already done before this `fit` call."""
        super().__init__()
        self.initial_step = int(initial_step)

    def global_step(self, batch: int) -> int:
        """Global step after Keras' 0-based `batch` of the (single) epoch."""
        return self.initial_step + batch + 1


class MetricsLogger(StepCallback):
    """Append one JSON line every `every` steps: step, loss, lr, examples/s, wall time."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        every: int,
        batch_size: int,
        initial_step: int = 0,
        elapsed_offset: float = 0.0,
    ) -> None:
        """Log to `path`; `elapsed_offset` is the training time of earlier sessions (resume)."""
        super().__init__(initial_step)
        self.path = Path(path)
        self.every = int(every)
        self.batch_size = int(batch_size)
        self.elapsed_offset = float(elapsed_offset)
        self.last: dict[str, Any] | None = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Start the clocks and the running sums."""
        self.start = self.window_start = time.perf_counter()
        self.window_batch = -1
        self.window_sum = 0.0

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Every `every` global steps, write the mean loss of the window since the last line."""
        step = self.global_step(batch)
        if step % self.every:
            return
        # Keras reports the running mean over the epoch; recover the window's mean from it.
        running_sum = float((logs or {}).get("loss", float("nan"))) * (batch + 1)
        steps = batch - self.window_batch
        now = time.perf_counter()
        record = {
            "step": step,
            "loss": _round((running_sum - self.window_sum) / steps),
            "lr": _round(current_learning_rate(self.model)),
            "examples_per_s": _round(steps * self.batch_size / max(now - self.window_start, 1e-9)),
            "wall_time": _round(self.elapsed_offset + now - self.start),
            "time": round(time.time(), 3),
        }
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        self.last = record
        self.window_batch, self.window_sum, self.window_start = batch, running_sum, now

    def elapsed(self) -> float:
        """Training seconds including earlier sessions."""
        return self.elapsed_offset + time.perf_counter() - self.start


class PeriodicCheckpoint(StepCallback):
    """Every `every` steps call `save(model, step)` (an atomic save of latest + step_N)."""

    def __init__(
        self, save: Callable[[keras.Model, int], Any], every: int, initial_step: int = 0
    ) -> None:
        """`save` does the writing; this callback only decides when."""
        super().__init__(initial_step)
        self.save = save
        self.every = int(every)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Save on multiples of `every`."""
        step = self.global_step(batch)
        if step % self.every == 0:
            self.save(self.model, step)


class SamplePreview(StepCallback):
    """Every `every` steps call `preview(model, step)`, which writes samples/step_N.png."""

    def __init__(
        self, preview: Callable[[keras.Model, int], Any], every: int, initial_step: int = 0
    ) -> None:
        """`preview` does the sampling and plotting; this callback only decides when."""
        super().__init__(initial_step)
        self.preview = preview
        self.every = int(every)

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Preview on multiples of `every`."""
        step = self.global_step(batch)
        if step % self.every == 0:
            self.preview(self.model, step)


class ProgressBar(StepCallback):
    """A tqdm bar over the run's steps showing the loss and examples per second."""

    def __init__(
        self,
        total: int,
        batch_size: int,
        initial_step: int = 0,
        every: int = 1,
        desc: str = "train",
    ) -> None:
        """Bar from initial_step to total; the postfix is refreshed every `every` steps."""
        super().__init__(initial_step)
        self.total, self.batch_size, self.every = int(total), int(batch_size), int(every)
        self.desc = desc
        self.bar: Any = None

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Open the bar (tqdm disables itself when stderr is not a terminal)."""
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=self.total, initial=self.initial_step, unit="step", desc=self.desc, disable=None
        )
        self.last_time, self.last_step = time.perf_counter(), self.initial_step

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """Advance one step; every `every` steps show the loss and the speed."""
        self.bar.update(1)
        step = self.global_step(batch)
        if step % self.every == 0 and logs and "loss" in logs:
            now = time.perf_counter()
            speed = (step - self.last_step) * self.batch_size / max(now - self.last_time, 1e-9)
            self.bar.set_postfix(loss=f"{float(logs['loss']):.4g}", ex_per_s=f"{speed:.0f}")
            self.last_time, self.last_step = now, step

    def on_train_end(self, logs: dict | None = None) -> None:
        """Close the bar."""
        if self.bar is not None:
            self.bar.close()


class GracefulInterrupt(StepCallback):
    """On the first SIGINT, finish the current step, call `on_stop(model, step)` and stop `fit`.

    A second SIGINT raises KeyboardInterrupt at once, as Python does by default. The previous
    handler is restored when training ends. Outside the main thread this callback does nothing.
    """

    def __init__(self, on_stop: Callable[[keras.Model, int], Any], initial_step: int = 0) -> None:
        """`on_stop` saves the checkpoint of the interrupted run."""
        super().__init__(initial_step)
        self.on_stop = on_stop
        self.requested = False
        self.stopped_at: int | None = None
        self._previous: Any = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        """First SIGINT: ask for a clean stop; the second one interrupts immediately."""
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def on_train_begin(self, logs: dict | None = None) -> None:
        """Install the SIGINT handler."""
        try:
            self._previous = signal.signal(signal.SIGINT, self._handle)
        except ValueError:  # not the main thread: signals cannot be handled here
            self._previous = None

    def on_train_batch_end(self, batch: int, logs: dict | None = None) -> None:
        """After a requested stop: save through `on_stop`, then end `fit`."""
        if self.requested and self.stopped_at is None:
            self.stopped_at = self.global_step(batch)
            self.on_stop(self.model, self.stopped_at)
            self.model.stop_training = True

    def on_train_end(self, logs: dict | None = None) -> None:
        """Restore the previous SIGINT handler."""
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def tensorboard_callback(
    log_dir: str | os.PathLike[str], every: int
) -> keras.callbacks.Callback | None:
    """Keras' TensorBoard callback writing every `every` steps, or None without tensorboard."""
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return None
    return keras.callbacks.TensorBoard(log_dir=str(log_dir), update_freq=every, write_graph=False)
