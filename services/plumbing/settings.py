"""Settings every service shares, read from the environment once, in the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from contracts.policy import ApprovalPolicy, load_policy, parse_duration
from plumbing.cron import parse_schedule
from plumbing.tracing import tracing_wanted


@dataclass(frozen=True)
class ServiceSettings:
    """Read from APP_ID, PUBSUB_NAME, STATE_STORE_NAME, READINESS_PUBSUB, MAX_BODY_BYTES,
    APP_API_TOKEN, DAPR_API_TOKEN, ALLOWED_HOSTS, DAPR_HTTP_PORT, DAPR_RUNTIME_HOST, DECISION_HOLD,
    SECRET_STORE, TOKENS_SECRET, SIGNING_STORE, SIGNING_SECRET, DEV_MODE, LOG_FORMAT, STUCK_AFTER,
    RETENTION_SCHEDULE, RETENTION_AGE, RETENTION_DRY_RUN (scheduled purges: control.retention),
    OTEL_* and TRACES_URL (plumbing.tracing), AUDIT_* (the audit log: its key secret, checkpoint
    interval, refusal rate) and POLICY_* (see contracts.policy).

    DEV_MODE=true marks a development stack (devstack sets it): development-only conveniences
    (the readable `dev-` tokens, the API docs page) are refused without it."""

    app_id: str
    pubsub: str = "pubsub"
    state_store: str = "statestore"
    # The pub/sub component /readyz publishes a probe to (plumbing.health); "" checks no broker.
    readiness_pubsub: str = "readiness"
    max_body_bytes: int = 64 * 1024
    app_api_token: str | None = field(default=None, repr=False)
    # The token this app sends to its sidecar (the SDK reads DAPR_API_TOKEN itself).
    dapr_api_token: str | None = field(default=None, repr=False)
    # Host headers the app answers (DNS rebinding); health routes answer any.
    allowed_hosts: tuple[str, ...] = ("127.0.0.1", "localhost")
    dapr_host: str = "127.0.0.1"
    dapr_http_port: int = 3500
    policy: ApprovalPolicy = field(default_factory=ApprovalPolicy)
    # How long a decision whose approval does not exist yet is held before dead-lettering.
    decision_hold_s: float = 300.0
    secret_store: str = "localsecretstore"
    tokens_secret: str = "api-tokens"
    # A signing app's private key is the secret `signing_secret` in a store only it may read
    # ("<app id>-keys" unless SIGNING_STORE says otherwise); every signer's public keys are the
    # secret "<signer>-verify-keys" in secret_store, which every app may read.
    signing_store: str = ""
    signing_secret: str = "signing-key"
    development: bool = False
    audit_key_secret: str = "audit-key"
    audit_checkpoint_every: int = 100
    # Audited refusals of unidentified callers, per client address: a burst, then a rate.
    audit_refusal_burst: int = 20
    audit_refusals_per_minute: float = 30.0
    # A live workflow quiet this long, with no timer of its own still ahead, counts as stuck.
    stuck_after: timedelta = timedelta(hours=1)
    # Scheduled retention: when (plumbing.cron; "off": never), what age of finished instances.
    retention_schedule: str = "0 30 3 * * 0"
    retention_age: timedelta = timedelta(days=90)
    retention_dry_run: bool = False
    # How the app writes its log: "json" (one object per line) or "text" (plumbing.logs).
    log_format: str = "json"
    # Export traces over OTLP (plumbing.tracing): an OTEL_EXPORTER_OTLP_ENDPOINT is set.
    tracing: bool = False
    # Where people read traces (a Jaeger UI): the console links instances there. "" for none.
    traces_url: str = ""

    @classmethod
    def from_env(cls, app_id: str, env: Mapping[str, str] | None = None) -> ServiceSettings:
        env = os.environ if env is None else env
        return cls(
            app_id=env.get("APP_ID", app_id),
            pubsub=env.get("PUBSUB_NAME", "pubsub"),
            state_store=env.get("STATE_STORE_NAME", "statestore"),
            readiness_pubsub=env.get("READINESS_PUBSUB", "readiness"),
            max_body_bytes=int(env.get("MAX_BODY_BYTES", str(64 * 1024))),
            app_api_token=env.get("APP_API_TOKEN") or None,
            dapr_api_token=env.get("DAPR_API_TOKEN") or None,
            allowed_hosts=tuple(
                h.strip()
                for h in env.get("ALLOWED_HOSTS", "127.0.0.1,localhost").split(",")
                if h.strip()
            ),
            dapr_host=env.get("DAPR_RUNTIME_HOST", "127.0.0.1"),
            dapr_http_port=int(env.get("DAPR_HTTP_PORT", "3500")),
            policy=load_policy(env),
            decision_hold_s=parse_duration(env.get("DECISION_HOLD", "5m")).total_seconds(),
            secret_store=env.get("SECRET_STORE", "localsecretstore"),
            tokens_secret=env.get("TOKENS_SECRET", "api-tokens"),
            signing_store=env.get("SIGNING_STORE", ""),
            signing_secret=env.get("SIGNING_SECRET", "signing-key"),
            development=env.get("DEV_MODE", "").lower() in ("1", "true", "yes"),
            audit_key_secret=env.get("AUDIT_KEY_SECRET", "audit-key"),
            audit_checkpoint_every=int(env.get("AUDIT_CHECKPOINT_EVERY", "100")),
            audit_refusal_burst=int(env.get("AUDIT_REFUSAL_BURST", "20")),
            audit_refusals_per_minute=float(env.get("AUDIT_REFUSALS_PER_MINUTE", "30")),
            stuck_after=parse_duration(env.get("STUCK_AFTER", "1h")),
            retention_schedule=_schedule(env.get("RETENTION_SCHEDULE", "0 30 3 * * 0")),
            retention_age=parse_duration(env.get("RETENTION_AGE", "2160h")),
            retention_dry_run=env.get("RETENTION_DRY_RUN", "").lower() in ("1", "true", "yes"),
            log_format=env.get("LOG_FORMAT", "json").lower(),
            tracing=tracing_wanted(env),
            traces_url=env.get("TRACES_URL", "").rstrip("/"),
        )

    @property
    def key_store(self) -> str:
        """The secret store that holds this app's signing key."""
        return self.signing_store or f"{self.app_id}-keys"

    def token_problem(self) -> str | None:
        """Why this app must not start with its sidecar tokens as they are, or None."""
        if self.development:
            return None
        tokens = {"APP_API_TOKEN": self.app_api_token, "DAPR_API_TOKEN": self.dapr_api_token}
        missing = [name for name, value in tokens.items() if not value]
        if missing:
            return (
                f"{' and '.join(missing)} not set: without them any local process could call "
                "this app's subscription routes or publish through its sidecar. Set them (the "
                "sidecar gets the same values), or DEV_MODE=true for a development run."
            )
        short = [name for name, value in tokens.items() if value and len(value) < 32]
        if short:
            return (
                f"{' and '.join(short)} must be long and random (32+ characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return None

    @property
    def sidecar_url(self) -> str:
        return f"http://{self.dapr_host}:{self.dapr_http_port}"


def _schedule(text: str) -> str:
    """RETENTION_SCHEDULE as given, once checked ("off" turns retention off)."""
    if text.strip().lower() in ("off", ""):
        return "off"
    try:
        parse_schedule(text)
    except ValueError as exc:
        raise ValueError(f"RETENTION_SCHEDULE: {exc}") from None
    return text.strip()
