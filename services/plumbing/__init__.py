"""The one seam to Dapr and the app skeleton's infrastructure: the gateway (pub/sub, state,
workflows, bindings, secrets), subscriptions, HTTP plumbing, settings, authentication and the
audit log's store.

Imports only contracts.
"""
