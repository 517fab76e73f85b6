"""Traces: the app's spans, exported over OTLP, in the same trace as its sidecar's.

On when OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) is set, unless
OTEL_SDK_DISABLED=true; the exporter reads the standard OTEL_EXPORTER_OTLP_* variables itself
(endpoint, headers, OTEL_EXPORTER_OTLP_INSECURE=true for a plain-text collector such as the
local Jaeger). devstack sets them to the Jaeger it starts.

What carries the W3C trace context from hop to hop:
- HTTP into the app (the FastAPI instrumentation), including the sidecar's deliveries, which
  send the CloudEvent's `traceparent` as a header;
- every gRPC call to the sidecar (the gRPC client instrumentation): a publish puts the current
  context into the CloudEvent, a workflow start into the instance, a binding call (the webhook)
  into the sidecar's outgoing span;
- activities: the workflow SDK opens an `activity: <name>` span under the context the runtime
  recorded for the workflow, so a replay (which runs no activity again) makes no span.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager

from fastapi import FastAPI
from opentelemetry import trace

# Probes and scrapes, many a minute, each a trace of its own: not worth keeping.
UNTRACED = "healthz,readyz,metrics"


def tracing_wanted(env: Mapping[str, str]) -> bool:
    """Whether the environment asks for traces (an OTLP endpoint, and the SDK not disabled)."""
    endpoint = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or env.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    return bool(endpoint) and env.get("OTEL_SDK_DISABLED", "").lower() != "true"


def current_trace_id() -> str | None:
    """The id of the trace the current span belongs to (32 hex digits), None outside one."""
    context = trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


@contextmanager
def untraced() -> Iterator[None]:
    """No spans for the calls made inside: a bulk job's calls to the sidecar, thousands of them,
    each of which would be a trace of its own."""
    from opentelemetry.instrumentation.utils import suppress_instrumentation

    with suppress_instrumentation():
        yield


def start_tracing(app: FastAPI, app_id: str) -> Callable[[], None]:
    """Export this process's spans as service `app_id`; instrument the app and gRPC. Returns
    what flushes and stops the exporter (the lifespan calls it at shutdown)."""
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
    from opentelemetry.instrumentation.grpc import GrpcInstrumentorClient
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: app_id}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    trace.set_tracer_provider(provider)
    instrumentor = GrpcInstrumentorClient()
    if not instrumentor.is_instrumented_by_opentelemetry:  # the workflow SDK may have done it
        instrumentor.instrument()
    FastAPIInstrumentor.instrument_app(
        app,
        tracer_provider=provider,
        excluded_urls=UNTRACED,
        exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
    )
    return provider.shutdown
