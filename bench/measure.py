"""What the figures are made of: open-loop sending, completion times from Dapr's own records,
CPU and memory from /proc, percentiles. Nothing here knows which side (ours or bare) it
measures."""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from dapr.ext.workflow import DaprWorkflowClient

from tests import resp

TICKS = os.sysconf("SC_CLK_TCK")


def open_loop(ids: list[str], rate: float | None, send: Callable[[str], None]) -> dict[str, float]:
    """Send one request per id at a fixed `rate` per second (None: as fast as the senders go),
    whatever the system answers meanwhile (open loop: a slow answer does not slow the next
    send). Returns when each was sent (time.time())."""
    sent: dict[str, float] = {}
    lock = threading.Lock()
    start = time.time()

    def one(n: int, key: str) -> None:
        if rate:
            delay = start + n / rate - time.time()
            if delay > 0:
                time.sleep(delay)
        at = time.time()
        send(key)
        with lock:
            sent[key] = at

    with ThreadPoolExecutor(32) as pool:
        for future in [pool.submit(one, n, key) for n, key in enumerate(ids)]:
            future.result()
    return sent


def completions(
    client: DaprWorkflowClient, instances: dict[str, str], timeout: float = 600
) -> dict[str, float]:
    """When each instance (key -> instance id) completed, as Dapr recorded it (its state's
    last update), waiting until all have. Instances are checked oldest first, and a round stops
    at the first one still running, so waiting adds few calls to the load being measured."""
    done: dict[str, float] = {}
    left = list(instances.items())
    deadline = time.monotonic() + timeout
    while left:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(left)} instances did not complete, e.g. {left[0][1]}")
        still = []
        blocked = False
        for key, iid in left:
            state = None if blocked else _state(client, iid)
            if state is not None and state.runtime_status.name == "COMPLETED":
                done[key] = state.last_updated_at.timestamp()
                continue
            if state is not None and state.runtime_status.name in ("FAILED", "TERMINATED"):
                raise RuntimeError(f"{iid} ended {state.runtime_status.name}")
            blocked = True
            still.append((key, iid))
        left = still
        if left:
            time.sleep(0.5)
    return done


def _state(client: DaprWorkflowClient, iid: str) -> Any:
    """The instance's state, or None while Dapr cannot say. A read that meets an instance
    mid-save fails ("inbox key ... missing from state store"): that is "not yet", not an end."""
    try:
        return client.get_workflow_state(iid, fetch_payloads=False)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.UNKNOWN:
            return None
        raise


def arrivals(
    read: Callable[[str], float | None], ids: Iterable[str], timeout: float = 120
) -> dict[str, float]:
    """When each message arrived at its subscriber, asking it (`read(id)`) until all have."""
    got: dict[str, float] = {}
    deadline = time.monotonic() + timeout
    for key in ids:
        while (at := read(key)) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"message {key} never arrived")
            time.sleep(0.01)
        got[key] = at
    return got


@dataclass
class Spread:
    p50: float
    p95: float
    p99: float

    @classmethod
    def of(cls, samples: list[float]) -> Spread:
        if len(samples) < 2:
            return cls(samples[0], samples[0], samples[0])
        cuts = statistics.quantiles(samples, n=100, method="inclusive")
        return cls(statistics.median(samples), cuts[94], cuts[98])


def latencies(sent: dict[str, float], ended: dict[str, float]) -> list[float]:
    return [ended[k] - sent[k] for k in sent]


def throughput(sent: dict[str, float], ended: dict[str, float]) -> float:
    """Completions per second from the first send to the last completion."""
    return len(ended) / (max(ended.values()) - min(sent.values()))


def cpu_seconds(pids: Iterable[int]) -> float:
    """User plus system CPU time these processes have used (all their threads)."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
    return total / TICKS


def rss_mib(pids: Iterable[int]) -> float:
    total = 0
    for pid in pids:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
    return total / 1024


def redis_used_mib(port: int, password: str) -> float:
    info = resp.command(port, password, "INFO", "memory")
    for line in str(info).splitlines():
        if line.startswith("used_memory:"):
            return int(line.split(":")[1]) / (1024 * 1024)
    raise RuntimeError("redis INFO memory has no used_memory")
