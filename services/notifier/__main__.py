from plumbing.serve import serve

serve("notifier", "notifier.app:create_app", 8103)
