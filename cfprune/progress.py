"""Progress of a long step, readable on a terminal and in a log.

:class:`Progress` is a tqdm bar when stderr is a terminal, and otherwise writes one line per
stage to stderr, so that a run whose output goes to a file says where it is::

    with Progress("report: tuning ALS", total=12, unit="model") as progress:
        for factors, reg in points:
            ...
            progress.step(f"(factors={factors}, regularization={reg:g}) recall@20 {r:.3f}")

writes, off a terminal, ``report: tuning ALS 3/12 (factors=64, regularization=30) recall@20
0.312, 41 s`` (the count done, what the stage did, the seconds since the step began). A step
with many small stages (blocks of users) gives ``min_interval``: a line at most that often, the
last stage always once a line was written, and nothing at all for a step shorter than that.
"""

from __future__ import annotations

import sys
import time

from tqdm.auto import tqdm


def on_terminal(stream=None):
    """Whether ``stream`` (default stderr) is an interactive terminal."""
    stream = sys.stderr if stream is None else stream
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty())


class Progress:
    """A stage logger: a tqdm bar on a terminal, one line per stage otherwise.

    Parameters
    ----------
    label : str
        What the step is, e.g. ``"report: tuning ALS"``; it starts every line.
    total : int or None
        Stages expected (shown as ``done/total``; None shows the count alone).
    unit : str
        tqdm's unit on a terminal.
    show : bool or None
        False: silent. None or True: the bar on a terminal, lines otherwise.
    min_interval : float
        Off a terminal, the seconds at least between two lines (0: a line per stage).
    stream : file or None
        Where the bar or the lines go (default ``sys.stderr``, looked up when built).
    """

    def __init__(self, label, total=None, *, unit="stage", show=None, min_interval=0.0,
                 stream=None):
        self.label = str(label)
        self.total = None if total is None else int(total)
        self.done = 0
        self.min_interval = float(min_interval)
        self.stream = sys.stderr if stream is None else stream
        self.start = time.perf_counter()
        self._last_line = None
        self._bar = None
        self.mode = "off" if show is False else \
            "bar" if on_terminal(self.stream) else "lines"
        if self.mode == "bar":
            self._bar = tqdm(total=self.total, desc=self.label, unit=unit, file=self.stream)

    @property
    def seconds(self):
        """Seconds since the step began."""
        return time.perf_counter() - self.start

    def step(self, text="", n=1):
        """Mark ``n`` more stages done; ``text`` says what the last one did (its figures)."""
        self.done += int(n)
        if self.mode == "bar":
            if text:
                self._bar.set_postfix_str(str(text)[:60], refresh=False)
            self._bar.update(int(n))
        elif self.mode == "lines":
            now = time.perf_counter()
            last = self.total is not None and self.done >= self.total
            since = now - (self.start if self._last_line is None else self._last_line)
            if since >= self.min_interval or (last and self._last_line is not None):
                self.line(text)

    def line(self, text=""):
        """Write the current count, ``text`` and the elapsed seconds as one line now (off a
        terminal; on a terminal the text goes to the bar)."""
        if self.mode == "bar":
            self._bar.set_postfix_str(str(text)[:60])
            return
        if self.mode == "off":
            return
        count = f"{self.done}/{self.total}" if self.total is not None else f"{self.done}"
        sep = " " if text else ""
        print(f"{self.label} {count}{sep}{text}, {self.seconds:.0f} s", file=self.stream,
              flush=True)
        self._last_line = time.perf_counter()

    def close(self):
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False
