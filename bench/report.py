"""The benchmark's table, and the lines below it: where M4's memory is held, and how M1 grows
with replicas. bench/run.py measures; this only shows."""

from __future__ import annotations

from typing import Any

# Where M4's memory is held, in the order shown (bench.figures.Bench.memory).
HELD = ("apps", "sidecars", "scheduler", "placement", "sentry", "postgres", "redis used")


def replicated(f: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The M1 figures measured with replicas ("M1 with 2 replicas"), if any."""
    return [(k, v) for k, v in f.items() if k.startswith("M1 with ")]


def table(f: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(figure, ours, bare, ratio, goal) rows; ratios are ours/bare, higher-is-better ones
    inverted so that every ratio reads 'how many times bare'."""
    m3o, m3b = f["M3"]["ours"], f["M3"]["bare"]
    m4o, m4b = f["M4"]["ours"], f["M4"]["bare"]
    m6o, m6b = f["M6"]["ours"], f["M6"]["bare"]
    ms = 1000
    rows = [
        (
            "M1 orders/s (burst)",
            f"{f['M1']['ours']:.1f}",
            f"{f['M1']['bare']:.1f}",
            f"{f['M1']['ours'] / f['M1']['bare']:.2f}x",
            ">= 1.0x",
        ),
        (
            "M2 CPU ms per order",
            f"{f['M2']['ours'] * ms:.0f}",
            f"{f['M2']['bare'] * ms:.0f}",
            f"{f['M2']['ours'] / f['M2']['bare']:.2f}x",
            "<= 1.3x",
        ),
        (
            f"M3 decision->COMPLETED p50 ms at {f['M3 rate']:.1f}/s",
            f"{m3o['p50'] * ms:.0f}",
            f"{m3b['p50'] * ms:.0f}",
            f"{m3o['p50'] / m3b['p50']:.2f}x",
            "<= 1.5x",
        ),
        (
            "M3 p95 ms",
            f"{m3o['p95'] * ms:.0f}",
            f"{m3b['p95'] * ms:.0f}",
            f"{m3o['p95'] / m3b['p95']:.2f}x",
            "",
        ),
        (
            "M3 p99 ms",
            f"{m3o['p99'] * ms:.0f}",
            f"{m3b['p99'] * ms:.0f}",
            f"{m3o['p99'] / m3b['p99']:.2f}x",
            "<= 3x",
        ),
        (
            "M4 MiB per 1,000 waiting orders",
            f"{m4o['all_mib_per_1000']:.0f}",
            f"{m4b['all_mib_per_1000']:.0f}",
            f"{m4o['all_mib_per_1000'] / max(m4b['all_mib_per_1000'], 0.1):.2f}x",
            "<= 1.2x",
        ),
        (
            "M4 our apps' own share, MiB",
            f"{m4o['apps_mib_per_1000']:.1f}",
            f"{m4b['apps_mib_per_1000']:.1f}",
            "",
            "<= 10 MiB",
        ),
        (
            f"list {f['listing']['instances']} instances with status, ms",
            f"{f['listing']['ours'] * ms:.0f}",
            f"{f['listing']['bare'] * ms:.0f}",
            f"{f['listing']['ours'] / f['listing']['bare']:.2f}x",
            "",
        ),
        (
            "M5 purge, instances/s",
            f"{f['M5']['ours']:.0f}",
            f"{f['M5']['bare']:.0f}",
            f"{f['M5']['ours'] / f['M5']['bare']:.2f}x",
            ">= 2x",
        ),
        (
            "M6 delivery latency p50 ms",
            f"{m6o['latency'] * ms:.1f}",
            f"{m6b['latency'] * ms:.1f}",
            f"{m6o['latency'] / m6b['latency']:.2f}x",
            "<= 1.2x",
        ),
        (
            "M6 deliveries/s (burst)",
            f"{m6o['throughput']:.0f}",
            f"{m6b['throughput']:.0f}",
            f"{m6o['throughput'] / m6b['throughput']:.2f}x",
            ">= 0.8x",
        ),
    ]
    for name, m1 in replicated(f):
        rows.insert(
            1,
            (
                f"{name} orders/s (burst)",
                f"{m1['ours']:.1f}",
                f"{m1['bare']:.1f}",
                f"{m1['ours'] / m1['bare']:.2f}x",
                ">= 1.0x",
            ),
        )
    return rows


def details(f: dict[str, Any]) -> list[str]:
    """Where M4's memory is held, per side; M1 from one replica to N."""
    held = {side: f["M4"][side]["held_per_1000"] for side in ("ours", "bare")}
    shown = [p for p in HELD if any(abs(held[s].get(p, 0)) >= 0.05 for s in held)]
    lines = [f"M4 MiB per 1,000 waiting orders, held by: {' / '.join(shown)}"]
    for side, parts in held.items():
        lines.append(f"  {side}: {' / '.join(f'{parts.get(p, 0):.1f}' for p in shown)}")
    for name, m1 in replicated(f):
        growth = {s: m1[s] / f["M1"][s] for s in ("ours", "bare")}
        lines.append(
            f"{name}: ours {f['M1']['ours']:.1f} -> {m1['ours']:.1f}/s ({growth['ours']:.2f}x),"
            f" bare {f['M1']['bare']:.1f} -> {m1['bare']:.1f}/s ({growth['bare']:.2f}x)"
            " against one replica"
        )
    return lines


def show(rows: list[tuple[str, str, str, str, str]], f: dict[str, Any]) -> None:
    width = max(len(r[0]) for r in rows)
    print(f"\n{'figure':<{width}}  {'ours':>8}  {'bare':>8}  {'ratio':>7}  goal")
    for name, ours, bare, ratio, goal in rows:
        print(f"{name:<{width}}  {ours:>8}  {bare:>8}  {ratio:>7}  {goal}")
    print()
    for line in details(f):
        print(line)
