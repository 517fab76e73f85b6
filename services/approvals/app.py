"""approvals: the composition root. `create_app(settings, gateway)` builds the FastAPI app."""

from __future__ import annotations

from dapr.ext.fastapi import DaprApp
from fastapi import FastAPI

from approvals import api, links
from approvals.domain import AlreadyDecided, ApprovalExpired, NotAuthorised, UnknownApproval
from approvals.workflows import APPROVAL_WORKFLOW, approval_workflow, make_activities
from control.app import build_app
from plumbing.gateway import Gateway
from plumbing.settings import ServiceSettings


def register(app: FastAPI, dapr_app: DaprApp, settings: ServiceSettings) -> None:
    api.register(app, dapr_app, settings)
    app.include_router(links.router)


def create_app(settings: ServiceSettings | None = None, gateway: Gateway | None = None) -> FastAPI:
    return build_app(
        settings=settings or ServiceSettings.from_env("approvals"),
        gateway=gateway,
        register=register,
        description="Approver decisions, the approver inbox and approval workflows.",
        workflows={APPROVAL_WORKFLOW: approval_workflow},
        activities=make_activities,
        signs=True,  # decisions and outcomes are verified by their consumers
        errors={
            UnknownApproval: 404,
            AlreadyDecided: 409,
            ApprovalExpired: 410,
            NotAuthorised: 403,
        },
    )
