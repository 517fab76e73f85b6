"""What crosses a service boundary: messages, topics, the CloudEvent envelope, the policy.

Imports nothing of ours. Services, plumbing and control import it.
"""
