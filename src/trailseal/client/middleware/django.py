"""Request context for Django: add
``"trailseal.client.middleware.django.AuditContextMiddleware"`` to ``MIDDLEWARE`` after
``AuthenticationMiddleware``, so the default actor resolver sees ``request.user``.

Settings, all optional:

* ``TRAILSEAL_TRUSTED_PROXIES``: addresses or CIDRs whose ``X-Forwarded-For`` is believed
  (default none).
* ``TRAILSEAL_SESSION_COOKIE``: the cookie hashed into the session id (default
  ``SESSION_COOKIE_NAME``; None records no session).
* ``TRAILSEAL_ACTOR_RESOLVER``: a callable or its dotted path, taking the request and
  returning an actor or None (default ``user_actor``; None resolves no actor).
* ``TRAILSEAL_REQUEST_ID_HEADER``: request id header read and echoed (default
  ``X-Request-ID``).

The default resolver reads ``request.user``, which loads the session and the user on every
request; set ``TRAILSEAL_ACTOR_RESOLVER = None`` and call ``context.set_actor`` where you
authenticate if that is too dear (or when authentication happens in the view, as with
Django REST framework). The body of a ``StreamingHttpResponse`` is produced after the
middleware returns, so outside the context.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from trailseal.client import context

_UNSET = object()


def user_actor(request: Any) -> dict[str, str] | None:
    """The default resolver: the authenticated ``request.user`` as a user actor."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return None
    actor = {"type": "user", "id": str(user.pk)}
    name = user.get_username()
    if name:
        actor["name"] = str(name)
    return actor


def trusted_proxies() -> context.TrustedProxies:
    """``TRAILSEAL_TRUSTED_PROXIES``, parsed."""
    return context.TrustedProxies(getattr(settings, "TRAILSEAL_TRUSTED_PROXIES", ()))


def session_cookie() -> str | None:
    """``TRAILSEAL_SESSION_COOKIE``, by default Django's session cookie name."""
    name = getattr(settings, "TRAILSEAL_SESSION_COOKIE", _UNSET)
    if name is _UNSET:
        return str(settings.SESSION_COOKIE_NAME)
    return None if name is None else str(name)


def actor_resolver() -> context.ActorResolver | None:
    """``TRAILSEAL_ACTOR_RESOLVER``, imported when given as a dotted path."""
    resolver: Any = getattr(settings, "TRAILSEAL_ACTOR_RESOLVER", _UNSET)
    if resolver is _UNSET:
        return user_actor
    if isinstance(resolver, str):
        resolver = import_string(resolver)
    if resolver is not None and not callable(resolver):
        raise ImproperlyConfigured("TRAILSEAL_ACTOR_RESOLVER must be a callable or its path")
    return cast(context.ActorResolver | None, resolver)


def request_id_header() -> str:
    """``TRAILSEAL_REQUEST_ID_HEADER``, by default ``X-Request-ID``."""
    return str(getattr(settings, "TRAILSEAL_REQUEST_ID_HEADER", "X-Request-ID"))


class AuditContextMiddleware:
    """Bind a ``RequestContext`` around each request and echo its request id."""

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        # Django builds middleware once per process, so settings are read once.
        self.get_response = get_response
        self.trusted_proxies = trusted_proxies()
        self.session_cookie = session_cookie()
        self.actor_resolver = actor_resolver()
        self.request_id_header = request_id_header()

    def __call__(self, request: Any) -> Any:
        headers: Mapping[str, str] = request.headers
        ctx = context.build_request_context(
            headers.get,
            peer=request.META.get("REMOTE_ADDR"),
            session_token=(
                request.COOKIES.get(self.session_cookie) if self.session_cookie else None
            ),
            trusted_proxies=self.trusted_proxies,
            request_id_header=self.request_id_header,
        )
        token = context.bind(ctx)
        try:
            context.run_actor_resolver(self.actor_resolver, request)
            response = self.get_response(request)
            # Replaces a value set by the view: the id the caller sees must be the one
            # recorded in its audit events.
            response[self.request_id_header] = ctx.request_id
            return response
        finally:
            context.reset(token)
