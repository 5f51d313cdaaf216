"""Middleware that binds the request context (``trailseal.client.context``) for each
request: ``asgi`` (Starlette, FastAPI, any ASGI app), ``django`` and ``flask``. Import the
one you use; each imports only its own framework."""
