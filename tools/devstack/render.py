"""Render components/ and the Configuration into a stack's run dir, with its addresses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from devstack.keys import write_private
from devstack.procs import LOOPBACK
from devstack.runfile import RunFile

if TYPE_CHECKING:
    from devstack.stack import Stack

REDIS_COMPONENT_TYPES = {"pubsub.redis", "state.redis", "bindings.redis", "lock.redis"}


def render_resources(self: Stack, spec: RunFile) -> tuple[Path, Path]:
    """Copy components/ and the Configuration into the run dir with this stack's addresses."""
    out = self.run_dir / "resources"
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("*.yaml"):
        stale.unlink()
    for src in sorted(spec.resources_path.glob("*.y*ml")):
        chosen = spec.resources_path / self.state_store / src.name
        text = (chosen if chosen.is_file() else src).read_text()
        docs = [d for d in yaml.safe_load_all(text) if d]
        for doc in docs:
            if doc.get("kind") != "Component":
                continue
            overrides = dict(self.component_metadata.get(doc["metadata"]["name"], {}))
            if doc["spec"]["type"] in REDIS_COMPONENT_TYPES:
                overrides.setdefault("redisHost", f"{LOOPBACK}:{self.redis_port}")
                overrides.setdefault("redisPassword", self.own_secrets.redis_password)
            if doc["spec"]["type"] == "state.postgresql" and self.postgres_cluster is not None:
                overrides.setdefault("connectionString", self.postgres_cluster.connection_string())
            if doc["spec"]["type"] == "secretstores.local.file":
                for item in doc["spec"].get("metadata") or []:
                    if item.get("name") == "secretsFile":
                        # Relative to the project: the folder that holds components/.
                        path = spec.resources_path.parent / str(item["value"])
                        name = doc["metadata"]["name"]
                        mine = self.own_secrets.render(name, path, self.run_dir / "secrets")
                        overrides.setdefault("secretsFile", str(mine))
            items = doc["spec"].setdefault("metadata", [])
            for item in items:
                if item.get("name") in overrides:
                    item["value"] = overrides.pop(item["name"])
            items.extend({"name": k, "value": v} for k, v in overrides.items())
            if doc.get("scopes"):
                doc["scopes"] = [*doc["scopes"], *self.also_scope]
        # Private: the rendered components carry the Redis password.
        write_private(out / src.name, yaml.safe_dump_all(docs, sort_keys=False))
    config = yaml.safe_load(spec.config_path.read_text())
    resolver = config["spec"].get("nameResolution") or {}
    if resolver.get("component") == "sqlite":
        resolver.setdefault("configuration", {})["connectionString"] = str(
            self.run_dir / "nameresolution.db"
        )
    config_out = self.run_dir / "config.yaml"
    config_out.write_text(yaml.safe_dump(config, sort_keys=False))
    return out, config_out
