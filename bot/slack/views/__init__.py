"""Block Kit views: one module per surface, sharing the helpers in `blocks`."""
