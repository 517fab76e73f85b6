"""orders: the composition root. `create_app(settings, gateway)` builds the FastAPI app.

With no gateway, the lifespan opens the Dapr clients and starts the WorkflowRuntime hosting
order_workflow; service tests pass a fake gateway and nothing talks to a sidecar.
"""

from __future__ import annotations

from fastapi import FastAPI

from control.app import build_app
from orders import api
from orders.activities import make_activities
from orders.domain import ConflictingOrder, NotCancellable
from orders.workflows import ORDER_WORKFLOW, order_workflow
from plumbing.gateway import Gateway
from plumbing.settings import ServiceSettings


def create_app(settings: ServiceSettings | None = None, gateway: Gateway | None = None) -> FastAPI:
    return build_app(
        settings=settings or ServiceSettings.from_env("orders"),
        gateway=gateway,
        register=api.register,
        description="Order intake, order workflows and their management API.",
        workflows={ORDER_WORKFLOW: order_workflow},
        activities=make_activities,
        signs=True,  # approval requests and status changes are verified by their consumers
        errors={ConflictingOrder: 409, NotCancellable: 409},
    )
