"""The HTTP API: an app factory and one module per area."""
