"""The nemesis: real faults at random moments, from a printed seed so a failure can be replayed
(FAULT_SEED=<seed>). SIGKILL of an app, of a sidecar, of redis-server (AOF on), of placement,
of scheduler, of sentry, of PostgreSQL when it is the state store, and SIGSTOP then SIGCONT of
an app (a hung process). With replicas,
an app fault strikes one replica (`orders-2`, `orders-2-daprd`), one at a time. Each killed
process is started again after a short pause, as a supervisor (or Kubernetes) would."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from devstack.stack import Stack

APPS = ("orders", "approvals", "notifier")
KINDS = (
    "kill-app",
    "kill-sidecar",
    "kill-redis",
    "kill-placement",
    "kill-scheduler",
    "kill-sentry",
    "hang-app",
)
POSTGRES = "kill-postgres"  # when the stack's state store is PostgreSQL


@dataclass
class Fault:
    kind: str
    target: str
    at: float  # time.monotonic() when it began
    began: datetime  # the same, on the wall clock (records carry UTC times)
    healed: float = 0.0

    def __str__(self) -> str:
        return f"{self.kind} {self.target} for {self.healed - self.at:.1f}s"


@dataclass
class Nemesis:
    stack: Stack
    seed: int
    faults: list[Fault] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self, first_after: float = 3.0, gap: tuple[float, float] = (4.0, 9.0)) -> None:
        rng = random.Random(self.seed)

        # Every kind of fault in each round, in an order the seed decides.
        kinds = self.kinds
        rounds = [k for _ in range(50) for k in rng.sample(kinds, len(kinds))]

        def loop() -> None:
            wait = first_after
            while not self._stop.wait(wait):
                try:
                    self.inject(rng, rounds.pop(0))
                except Exception as exc:  # a nemesis that stops would hide it: say, go on
                    self.errors.append(f"{type(exc).__name__}: {exc}")
                    self._say(f"could not inject a fault: {self.errors[-1]}")
                wait = rng.uniform(*gap)

        self._thread = threading.Thread(target=loop, name="nemesis", daemon=True)
        self._thread.start()

    @property
    def kinds(self) -> tuple[str, ...]:
        return KINDS + ((POSTGRES,) if self.stack.state_store == "postgres" else ())

    def wait_for_every_kind(self, timeout: float) -> None:
        """Go on until each kind of fault has struck at least once (or `timeout` passed)."""
        deadline = time.monotonic() + timeout
        while {f.kind for f in self.faults} != set(self.kinds) and time.monotonic() < deadline:
            time.sleep(1)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(120)

    def inject(self, rng: random.Random, kind: str) -> Fault:
        app = rng.choice(self.stack.replica_names(rng.choice(APPS)))
        target = {
            "kill-app": app,
            "hang-app": app,
            "kill-sidecar": f"{app}-daprd",
            "kill-redis": "redis",
            "kill-placement": "placement",
            "kill-scheduler": "scheduler",
            "kill-sentry": "sentry",
            POSTGRES: "postgres",
        }[kind]
        (proc,) = [p for p in self.stack.procs if p.name == target]
        fault = Fault(kind, target, time.monotonic(), datetime.now(UTC))
        down_for = rng.uniform(0.5, 4.0)
        self._say(f"{kind} {target} (pid {proc.pid}) for {down_for:.1f}s")
        if kind == "hang-app":
            assert proc.popen is not None
            os.killpg(proc.popen.pid, signal.SIGSTOP)
            time.sleep(down_for)
            os.killpg(proc.popen.pid, signal.SIGCONT)
        else:
            proc.crash()
            time.sleep(down_for)
            self.stack.restart(target, crash=False)  # started again, waited for when an app
        fault.healed = time.monotonic()
        self.faults.append(fault)
        return fault

    def _say(self, text: str) -> None:
        print(f"[nemesis {datetime.now(UTC):%H:%M:%S}] {text}", flush=True)
