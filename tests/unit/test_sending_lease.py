"""The notifier's sending lease outlasts the longest send the resiliency policies allow, so a
redelivery never finds the lease run out while the first delivery is still sending."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from notifier.api import SENDING_LEASE

ROOT = Path(__file__).resolve().parents[2]
POLICIES = [ROOT / "components" / "resiliency.yaml", ROOT / "deploy/base/dapr-components.yaml"]
# Dapr's exponential retry: a fixed first interval of 500 ms, growing by 1.5 up to
# maxInterval, each interval randomized by up to +50 %.
FIRST, GROWTH, JITTER = 0.5, 1.5, 1.5


def seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    return sum(float(n) * units[u] for n, u in re.findall(r"([\d.]+)(ms|s|m|h)", text))


def worst_case(retry: dict[str, Any], timeout: str) -> float:
    """The longest an outbound call may take: every try up to its timeout, plus the back-off."""
    retries = int(retry["maxRetries"])
    if retry.get("policy") == "constant":
        waits = [seconds(retry.get("duration", "5s"))] * retries
    else:
        cap = seconds(retry.get("maxInterval", "60s"))
        waits = [min(FIRST * GROWTH**i, cap) * JITTER for i in range(retries)]
    return (retries + 1) * seconds(timeout) + sum(waits)


def outbound(path: Path) -> dict[str, float]:
    (doc,) = [d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "Resiliency"]
    policies = doc["spec"]["policies"]
    found = {}
    for name, target in doc["spec"]["targets"]["components"].items():
        if out := target.get("outbound"):
            assert "retry" in out and "timeout" in out, f"{name}: unbounded outbound policy"
            retry = policies["retries"][out["retry"]]
            found[name] = worst_case(retry, policies["timeouts"][out["timeout"]])
    return found


@pytest.mark.parametrize("path", POLICIES, ids=lambda p: p.parent.name)
def test_sending_lease_outlasts_every_outbound_binding_send(path: Path) -> None:
    worst = outbound(path)
    assert {"notify-webhook", "notify-email"} <= worst.keys()
    for name, total in worst.items():
        assert timedelta(seconds=total) < SENDING_LEASE, f"{name} may take {total:.0f} s"


def test_worst_case_counts_every_try_and_the_back_off() -> None:
    retry = {"policy": "exponential", "maxInterval": "10s", "maxRetries": 5}
    assert worst_case(retry, "20s") == pytest.approx(
        6 * 20 + 1.5 * (0.5 + 0.75 + 1.125 + 1.6875 + 2.53125)
    )
