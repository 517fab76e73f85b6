"""The control room: the workflow management API, the instance index, bulk jobs, the audit
API, the web console, and the service skeleton (`build_app`) that mounts them.

Imports plumbing and contracts.
"""
