"""Progress bars for long jobs (conversions, exports): tqdm on stderr, imported only when a
bar is shown, so the commands that use them start fast."""

from __future__ import annotations

import sys
import time

PROGRESS_AFTER_SECONDS = 0.5  # LazyProgress: no bar for jobs shorter than this


def progress_bar(total: int | None, desc: str):
    """A tqdm bar on stderr; redrawn often on a terminal, every 10 s in logs."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        unit="img",
        desc=desc,
        file=sys.stderr,
        mininterval=0.5 if sys.stderr.isatty() else 10.0,
        dynamic_ncols=True,
    )


class LazyProgress:
    """A progress bar that only appears (and only imports tqdm) once a job runs past
    ``PROGRESS_AFTER_SECONDS``: short jobs print nothing and start faster."""

    def __init__(self, total: int, desc: str):
        self.total, self.desc, self.after = total, desc, PROGRESS_AFTER_SECONDS
        self.t0 = time.perf_counter()
        self.done = 0
        self.bar = None

    def update(self, n: int) -> None:
        """Count ``n`` more items done (and show the bar once the job is slow enough)."""
        self.done += n
        if self.bar is None and time.perf_counter() - self.t0 >= self.after:
            self.bar = progress_bar(self.total, self.desc)
            self.bar.update(self.done - n)
        if self.bar is not None:
            self.bar.update(n)

    def close(self) -> None:
        """Close the bar, if one was shown."""
        if self.bar is not None:
            self.bar.close()
