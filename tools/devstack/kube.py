"""Build the parts of a real Kubernetes control plane with Dapr, from Go modules, once.

For the Kubernetes tier (tests/k8s): kube-apiserver, kube-controller-manager and kubectl from
`k8s.io/kubernetes`, etcd from `go.etcd.io/etcd/server/v3`, and Dapr's sentry, sidecar
injector and operator from the same `github.com/dapr/dapr` as daprd, with Dapr's CRDs from
that module's `charts/dapr/crds/`. Each part is cached by version under
~/.cache/order-approvals/ (kubernetes/<v>, etcd/<v>, dapr-kubernetes/<v>) and built in a
scratch directory that is renamed into place only when complete. One build runs at a time
per cache (the runtime's lock file); a second caller waits, then finds the cache complete.

Errors: RuntimeUnavailable and ModuleNotServed (runtime.py), each one actionable line.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import DevstackError
from devstack.log import say
from devstack.runtime import (
    PINNED_VERSION,
    BuildLock,
    RuntimeUnavailable,
    _go_env,
    _require_go,
    _run_go,
    cache_root,
    module_copy,
)

KUBERNETES_VERSION = "1.34.4"
# The etcd that k8s.io/kubernetes v1.34.4 pins (its go.mod).
ETCD_VERSION = "3.6.4"
KUBERNETES_BINARIES = ("kube-apiserver", "kube-controller-manager", "kubectl")
DAPR_BINARIES = ("sentry", "injector", "operator")
MARKER = ".complete.json"


@dataclass(frozen=True)
class KubeParts:
    kubernetes_version: str
    etcd_version: str
    dapr_version: str
    bins: dict[str, Path]
    crds: Path

    def binary(self, name: str) -> Path:
        return self.bins[name]


def _part_dir(part: str, version: str) -> Path:
    return cache_root() / part / version


def _complete(part: str, version: str, names: tuple[str, ...]) -> bool:
    bin_dir = _part_dir(part, version) / "bin"
    return (bin_dir / MARKER).is_file() and all((bin_dir / n).is_file() for n in names)


def ensure_kube_parts(dapr_version: str | None = None) -> KubeParts:
    """Return the cached parts, building (once, minutes) whichever part is missing."""
    dapr = dapr_version or os.environ.get("DAPR_RUNTIME_VERSION", PINNED_VERSION)
    parts: list[tuple[str, str, tuple[str, ...], Callable[[str, Path], None]]] = [
        ("kubernetes", KUBERNETES_VERSION, KUBERNETES_BINARIES, _build_kubernetes),
        ("etcd", ETCD_VERSION, ("etcd",), _build_etcd),
        ("dapr-kubernetes", dapr, DAPR_BINARIES, _build_dapr),
    ]
    missing = [p for p in parts if not _complete(p[0], p[1], p[2])]
    if missing:
        _require_go()
        with BuildLock():
            for part, version, names, build in missing:
                if not _complete(part, version, names):  # built meanwhile by another caller
                    _build_part(part, version, build)
    bins = {
        name: _part_dir(part, version) / "bin" / name
        for part, version, names, _ in parts
        for name in names
    }
    crds = _part_dir("dapr-kubernetes", dapr) / "crds"
    return KubeParts(KUBERNETES_VERSION, ETCD_VERSION, dapr, bins, crds)


def _build_part(part: str, version: str, build: Callable[[str, Path], None]) -> None:
    final = _part_dir(part, version)
    say(f"kube: building {part} {version} from Go modules; cached in {final} once done")
    for stale in cache_root().glob(f"building-{part}-*"):  # left by an interrupted build
        shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=f"building-{part}-{version}-", dir=cache_root()))
    try:
        out = scratch / "out"
        (out / "bin").mkdir(parents=True)
        build(version, scratch)
        (out / "bin" / MARKER).write_text(json.dumps({"part": part, "version": version}) + "\n")
        if final.exists():
            shutil.rmtree(final)
        final.parent.mkdir(parents=True, exist_ok=True)
        out.rename(final)
        say(f"kube: {part} {version} ready in {final}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def staging_replaces(go_mod: str) -> list[str]:
    """The modules k8s.io/kubernetes takes from its ./staging directory (not in its zip)."""
    return re.findall(r"^\s*(k8s\.io/\S+) => \./staging/", go_mod, flags=re.M)


def published_go_mod(go_mod: str, version: str) -> str:
    """k8s.io/kubernetes's go.mod, requiring the published staging modules at v0.<minor>.<patch>.

    Only the `=> ./staging/...` replace lines go, and only requirements that are exactly
    `v0.0.0` (the staging placeholders) change; `v0.0.0-<date>-<hash>` pseudo-versions stay.
    """
    staged = set(staging_replaces(go_mod))
    published = "v0." + version.split(".", 1)[1]
    lines = []
    for line in go_mod.splitlines():
        if re.match(r"^\s*k8s\.io/\S+ => \./staging/", line):
            continue
        m = re.match(r"^(\s*)(k8s\.io/\S+) v0\.0\.0$", line)
        if m and m.group(2) in staged:
            line = f"{m.group(1)}{m.group(2)} {published}"
        lines.append(line)
    return "\n".join(lines) + "\n"


def _build_kubernetes(version: str, scratch: Path) -> None:
    src = module_copy("k8s.io/kubernetes", version, scratch / "src", _go_env())
    go_mod = (src / "go.mod").read_text()
    staged = staging_replaces(go_mod)
    (src / "go.mod").write_text(published_go_mod(go_mod, version))
    minor = version.split(".")[1]
    ldflags = " ".join(
        [
            "-s -w",
            f"-X k8s.io/component-base/version.gitVersion=v{version}",
            "-X k8s.io/component-base/version.gitMajor=1",
            f"-X k8s.io/component-base/version.gitMinor={minor}",
            "-X k8s.io/component-base/version.gitTreeState=clean",
        ]
    )
    # The published staging modules are not in k8s.io/kubernetes's go.sum, and the checksum
    # database may be unreachable: skip it for those modules (and only those) by name.
    env = _go_env(
        GOWORK="off", GOFLAGS="-mod=mod -buildvcs=false", GONOSUMDB=",".join(sorted(staged))
    )
    pkgs = [f"./cmd/{name}" for name in KUBERNETES_BINARIES]
    say(f"kube: compiling {', '.join(KUBERNETES_BINARIES)} {version} (the longest part)")
    out = scratch / "out" / "bin"
    _go_build(["-ldflags", ldflags, "-o", f"{out}/", *pkgs], src, env, "kubernetes")
    got = _first_line([str(out / "kubectl"), "version", "--client"])
    if f"v{version}" not in got:
        raise RuntimeUnavailable(f"built kubectl reports {got!r}, expected v{version}")


def _build_etcd(version: str, scratch: Path) -> None:
    # etcd's server module has replace directives of its own, so a small module of ours calls
    # etcdmain.Main. Its go.sum starts as the server's, which covers every dependency but the
    # etcd modules themselves (the server replaces them with its siblings).
    module = "go.etcd.io/etcd/server/v3"
    env = _go_env(GONOSUMDB="go.etcd.io/etcd", GOFLAGS="-mod=mod -buildvcs=false", GOWORK="off")
    server = module_copy(module, version, scratch / "server", env)
    src = scratch / "src"
    src.mkdir()
    (src / "go.mod").write_text(
        f"module order-approvals.invalid/etcd\n\ngo 1.24\n\nrequire {module} v{version}\n"
    )
    shutil.copy(server / "go.sum", src / "go.sum")
    (src / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    say(f"kube: compiling etcd {version}")
    out = scratch / "out" / "bin" / "etcd"
    _go_build(["-ldflags", "-s -w", "-o", str(out), "."], src, env, "etcd")
    got = _first_line([str(out), "--version"])
    if version not in got:
        raise RuntimeUnavailable(f"built etcd reports {got!r}, expected {version}")


def _build_dapr(version: str, scratch: Path) -> None:
    src = module_copy(
        "github.com/dapr/dapr", version, scratch / "src", _go_env(GONOSUMDB="github.com/dapr/dapr")
    )
    ldflags = f"-s -w -X github.com/dapr/dapr/pkg/buildinfo.version={version}"
    out = scratch / "out"
    say(f"kube: compiling Dapr {', '.join(DAPR_BINARIES)} {version}")
    pkgs = [f"./cmd/{name}" for name in DAPR_BINARIES]
    _go_build(["-ldflags", ldflags, "-o", f"{out / 'bin'}/", *pkgs], src, _go_env(), "dapr")
    shutil.copytree(src / "charts" / "dapr" / "crds", out / "crds")


def _go_build(args: list[str], src: Path, env: dict[str, str], label: str) -> None:
    _run_go(["go", "build", "-v", "-trimpath", *args], cwd=src, env=env, label=f"go build {label}")


def _first_line(cmd: list[str]) -> str:
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return ((out.stdout or out.stderr).strip().splitlines() or [""])[0]


def main_kube_parts() -> int:
    """`devstack kube-parts`: make sure every part is there and say where."""
    try:
        parts = ensure_kube_parts()
    except DevstackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    say(
        f"kube: Kubernetes {parts.kubernetes_version}, etcd {parts.etcd_version}, "
        f"Dapr control plane {parts.dapr_version}"
    )
    for name, path in sorted(parts.bins.items()):
        print(f"{name}\t{path}")
    print(f"crds\t{parts.crds}")
    return 0
