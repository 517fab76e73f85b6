from plumbing.serve import serve

serve("approvals", "approvals.app:create_app", 8102)
