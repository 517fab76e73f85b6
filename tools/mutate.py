"""`make mutate`: mutation testing of the domain, the workflows and the subscription helper.

mutmut 3 names a mutant after its file's path (minus a leading `src/`) and puts `mutants/src`
first on sys.path, so it expects `src/orders/workflows.py` to be the module `orders.workflows`.
Ours live in services/ (on sys.path through the editable install), so mutmut runs in
`.mutation/`, where `src` links to services/ and every other top-level entry links to the
repository's own. `[tool.mutmut]` in pyproject.toml says which modules are mutated and which
tests run (the unit and service tiers). One mutant at a time, at low priority: this machine is
shared.

    python tools/mutate.py               # a fresh run of every mutant, then the report
    python tools/mutate.py NAME|GLOB ... # test those mutants again in the last run, then report
    python tools/mutate.py --again       # test again those the last run did not kill
    python tools/mutate.py --report      # the last run's report only

A mutant a test killed stays killed while its function is unchanged (more tests cannot make
it live), so after adding tests `--again` gives the same numbers as a fresh run, sooner.

The report gives the kill rate per module and names the mutants that survived; it exits 1
when fewer than 90% of all mutants were killed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / ".mutation"
TARGET = 0.90
KILLED = {"killed", "timeout"}  # a mutant that hangs the tests is caught too


def stage() -> None:
    """Lay out `.mutation/` as mutmut expects: `src` is services/, the rest as it is."""
    STAGE.mkdir(exist_ok=True)
    links = {"src": ROOT / "services"} | {
        p.name: p for p in ROOT.iterdir() if not p.name.startswith(".")
    }
    for name, target in links.items():
        link = STAGE / name
        if not link.is_symlink():
            link.symlink_to(os.path.relpath(target, STAGE))


def mutmut(*args: str) -> subprocess.CompletedProcess[str]:
    """Run mutmut (the command this interpreter's environment installed) in the stage."""
    command = [str(Path(sys.executable).parent / "mutmut"), *args]
    return subprocess.run(command, cwd=STAGE, text=True, capture_output=args[0] == "results")


def module_of(mutant: str) -> str:
    """`orders.workflows.x__order__mutmut_3` -> `orders.workflows`."""
    parts = mutant.split(".")
    cut = next(i for i, p in enumerate(parts) if p.startswith(("x_", "xǁ")))
    return ".".join(parts[:cut])


def verdicts() -> dict[str, str]:
    """Every mutant of the last run and what became of it ("killed", "survived", ...)."""
    listed = mutmut("results", "--all", "true")
    if listed.returncode != 0:
        sys.exit(listed.stderr)
    status: dict[str, str] = {}
    for line in listed.stdout.splitlines():
        name, sep, verdict = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            status[name] = verdict
    return status


def report() -> int:
    """Print the kill rate per module and the survivors; 1 under the target, else 0."""
    status = verdicts()
    by_module: dict[str, Counter[str]] = defaultdict(Counter)
    for name, verdict in status.items():
        by_module[module_of(name)][verdict] += 1
    print(f"\n{'module':<24} {'mutants':>7} {'killed':>7} {'survived':>8} {'no tests':>8}  rate")
    total = Counter[str]()
    for module, counts in sorted(by_module.items()):
        total.update(counts)
        print(line_for(module, counts))
    print(line_for("all", total))
    left = sorted(n for n, v in status.items() if v not in KILLED)
    if left:
        print("\nnot killed (`mutmut show NAME` in .mutation/ prints the change):")
        for name in left:
            print(f"  {status[name]:<12} {name}")
    caught = sum(total[v] for v in KILLED)
    return 0 if total and caught >= TARGET * sum(total.values()) else 1


def line_for(module: str, counts: Counter[str]) -> str:
    """One row of the report."""
    n = sum(counts.values())
    caught = sum(counts[v] for v in KILLED)
    rate = f"{100 * caught / n:5.1f}%" if n else "   -"
    survived, no_tests = counts["survived"], counts["no tests"]
    return f"{module:<24} {n:>7} {caught:>7} {survived:>8} {no_tests:>8}  {rate}"


def main(argv: list[str]) -> int:
    """Run mutmut as asked, then report."""
    stage()
    if argv == ["--again"]:
        argv = sorted(n for n, v in verdicts().items() if v not in KILLED)
        if not argv:
            return report()
        # mutmut records which tests reach which function once, and afterwards only for new
        # tests: a test that was changed to reach more would go unused. Record them all again.
        (STAGE / "mutants" / "mutmut-stats.json").unlink(missing_ok=True)
    if argv != ["--report"]:
        if not argv:
            shutil.rmtree(STAGE / "mutants", ignore_errors=True)
        ran = mutmut("run", "--max-children", "1", *argv)
        if ran.returncode != 0:
            return ran.returncode
    return report()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
