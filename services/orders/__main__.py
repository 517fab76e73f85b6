from plumbing.serve import serve

serve("orders", "orders.app:create_app", 8101)
