"""The wall clock that workflow code sees while the harness or the replayer runs it.

A workflow must take time from `ctx.current_utc_datetime`; one that reads the wall clock
(`datetime.now()`, `date.today()`, `time.time()`) behaves differently when Dapr replays it
later, and fails there. Such a branch cannot be seen by running the code twice at the same
real time, so while workflow code runs the clock is frozen: at the workflow's own time in a
run (as on a sidecar's first execution), and far from it in a replay (as on a replay days
later). A branch on the wall clock then takes different turns and the replay diverges.

The freeze replaces `datetime`, `date`, the `datetime` and `time` modules and `time.time` /
`time.time_ns` where workflow code can reach them: in the namespace of every module that is
neither the standard library nor an installed package (your project, your tests), and in the
workflow's own module. Library code keeps the real clock. It is not thread-safe, like the
harness: run one workflow step at a time.
"""

from __future__ import annotations

import datetime as _dt
import sys
import sysconfig
import time as _time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

# How far a replay's wall clock is from the recorded run: more than a year, half a day and an
# odd number of seconds, so date, hour-of-day and parity branches all turn the other way.
REPLAY_CLOCK_SHIFT = _dt.timedelta(days=400, hours=12, minutes=30, seconds=7, microseconds=1)

_LIBRARY_ROOTS = tuple(
    {sysconfig.get_paths()[key] for key in ("stdlib", "platstdlib", "purelib", "platlib")}
)
_REAL_TIME = _time.time
_REAL_TIME_NS = _time.time_ns


class _RealInstances(type):
    """isinstance/issubclass against a frozen class answer for the real one it stands for."""

    def __instancecheck__(cls, obj: object) -> bool:
        return isinstance(obj, cls.__mro__[1])

    def __subclasscheck__(cls, sub: type) -> bool:
        return issubclass(sub, cls.__mro__[1])


def _frozen_types(at: _dt.datetime) -> tuple[type, type]:
    """`datetime` and `date` stand-ins whose now()/today() answer `at` (timezone-aware)."""

    class datetime(_dt.datetime, metaclass=_RealInstances):
        def __new__(cls, *args: Any, **kwargs: Any) -> _dt.datetime:  # type: ignore[misc]
            return _dt.datetime(*args, **kwargs)

        @classmethod
        def now(cls, tz: _dt.tzinfo | None = None) -> _dt.datetime:  # type: ignore[override]
            return at.astimezone(tz) if tz is not None else at.astimezone().replace(tzinfo=None)

        @classmethod
        def utcnow(cls) -> _dt.datetime:  # type: ignore[override]
            return at.astimezone(_dt.UTC).replace(tzinfo=None)

        @classmethod
        def today(cls) -> _dt.datetime:  # type: ignore[override]
            return at.astimezone().replace(tzinfo=None)

    class date(_dt.date, metaclass=_RealInstances):
        def __new__(cls, *args: Any, **kwargs: Any) -> _dt.date:  # type: ignore[misc]
            return _dt.date(*args, **kwargs)

        @classmethod
        def today(cls) -> _dt.date:  # type: ignore[override]
            return at.astimezone().date()

    return datetime, date


def _module_like(module: ModuleType, **replaced: Any) -> ModuleType:
    copy = ModuleType(module.__name__, module.__doc__)
    copy.__dict__.update(vars(module))
    copy.__dict__.update(replaced)
    return copy


def _reaches_workflow_code(module: ModuleType) -> bool:
    path = getattr(module, "__file__", None)
    if not path or module.__name__.split(".")[0] == "workflow_harness":
        return False
    if "site-packages" in path or "dist-packages" in path:
        return False
    return not path.startswith(_LIBRARY_ROOTS)


class WallClock:
    """The wall clock one workflow's code reads, frozen while it runs (see the module doc)."""

    def __init__(self, workflow: Callable[..., Any]) -> None:
        self._workflow = workflow
        self._modules: list[ModuleType] = []
        self._seen = -1  # how many modules were loaded when _modules was worked out

    def modules(self) -> list[ModuleType]:
        """Where workflow code can reach the clock: your modules and the workflow's own."""
        if len(sys.modules) != self._seen:
            self._seen = len(sys.modules)
            found = {m for m in list(sys.modules.values()) if _reaches_workflow_code(m)}
            if (own := sys.modules.get(getattr(self._workflow, "__module__", ""))) is not None:
                found.add(own)
            self._modules = sorted(found, key=lambda m: m.__name__)
        return self._modules

    @contextmanager
    def frozen(self, at: _dt.datetime) -> Iterator[None]:
        """Freeze the clock at `at` (timezone-aware) for the time being."""
        datetime_type, date_type = _frozen_types(at)
        seconds = at.timestamp()

        def time() -> float:
            return seconds

        def time_ns() -> int:
            return int(seconds * 1_000_000_000)

        fakes: dict[int, Any] = {
            id(_dt.datetime): datetime_type,
            id(_dt.date): date_type,
            id(_REAL_TIME): time,
            id(_REAL_TIME_NS): time_ns,
            id(_dt): _module_like(_dt, datetime=datetime_type, date=date_type),
            id(_time): _module_like(_time, time=time, time_ns=time_ns),
        }
        patched: list[tuple[dict[str, Any], str, Any, Any]] = []
        for module in self.modules():
            namespace = vars(module)
            for name, value in list(namespace.items()):
                fake = fakes.get(id(value))
                if fake is not None and value is not fake:
                    namespace[name] = fake
                    patched.append((namespace, name, value, fake))
        try:
            yield
        finally:
            for namespace, name, real, fake in patched:
                if namespace.get(name) is fake:
                    namespace[name] = real
