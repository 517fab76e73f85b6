"""Progress lines for long operations, on stderr, timestamped relative to start."""

import sys
import time

_started = time.monotonic()


def say(message: str) -> None:
    """Print one progress line to stderr."""
    elapsed = time.monotonic() - _started
    print(f"[devstack {elapsed:6.1f}s] {message}", file=sys.stderr, flush=True)
