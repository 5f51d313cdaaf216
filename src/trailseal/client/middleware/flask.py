"""Request context for Flask: ``TrailsealAudit(app)``, or ``TrailsealAudit()`` then
``init_app(app)`` for app factories.

The context is bound in ``before_request`` and reset in ``teardown_request``, which runs
even when the view raises. A streamed body produced after the view returns runs outside
the request, as with everything else in Flask, unless wrapped in
``flask.stream_with_context``. If the app already rewrites ``remote_addr`` with
``werkzeug.middleware.proxy_fix.ProxyFix``, leave ``trusted_proxies`` empty.
"""

from __future__ import annotations

from collections.abc import Iterable

from flask import Flask, Response, g, request

from trailseal.client import context

_G_ATTRIBUTE = "_trailseal_context_token"  # where the contextvar token waits for teardown


class TrailsealAudit:
    """Bind a ``RequestContext`` around each request and echo its request id.

    ``actor_resolver`` gets ``flask.request`` and runs before the view (after any
    ``before_request`` hooks registered earlier, such as a login loader); views that
    authenticate later call ``context.set_actor``. ``session_cookie`` names the cookie
    hashed into the session id (Flask's default ``session``; None records no session).
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        trusted_proxies: Iterable[str] = (),
        request_id_header: str = "X-Request-ID",
        session_cookie: str | None = "session",
        actor_resolver: context.ActorResolver | None = None,
    ) -> None:
        self.trusted_proxies = context.TrustedProxies(trusted_proxies)
        self.request_id_header = request_id_header
        self.session_cookie = session_cookie
        self.actor_resolver = actor_resolver
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the hooks on ``app``."""
        app.before_request(self._bind)
        app.after_request(self._echo_request_id)
        app.teardown_request(self._reset)
        app.extensions["trailseal"] = self

    def _bind(self) -> None:
        ctx = context.build_request_context(
            request.headers.get,
            peer=request.remote_addr,
            session_token=(
                request.cookies.get(self.session_cookie) if self.session_cookie else None
            ),
            trusted_proxies=self.trusted_proxies,
            request_id_header=self.request_id_header,
        )
        setattr(g, _G_ATTRIBUTE, context.bind(ctx))
        context.run_actor_resolver(self.actor_resolver, request._get_current_object())  # type: ignore[attr-defined]

    def _echo_request_id(self, response: Response) -> Response:
        ctx = context.current()
        if ctx is not None and ctx.request_id is not None:
            response.headers[self.request_id_header] = ctx.request_id
        return response

    def _reset(self, _exc: BaseException | None) -> None:
        # Absent when an earlier before_request hook ended the request before ours ran.
        token = g.pop(_G_ATTRIBUTE, None)
        if token is not None:
            context.reset(token)
