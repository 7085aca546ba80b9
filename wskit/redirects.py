"""Redirects during the opening handshake, sans-I/O.

RFC 6455 §4.1 lets a client follow the server's redirects before the
connection is open. :func:`redirect_target` turns a redirect response into
the next URI to try, with these rules:

* the statuses followed are 301, 302, 303, 307 and 308 (the method stays
  GET: a WebSocket request has no body, so they all mean "ask there");
* ``Location`` may be absolute or relative to the current URI; ``http://``
  and ``https://`` stand for ``ws://`` and ``wss://`` (a server redirecting
  every request to HTTPS sends such a ``Location``);
* ``ws://`` → ``wss://`` is allowed, ``wss://`` → ``ws://`` is refused (it
  would drop TLS);
* credentials (``user:password@`` of the URI) go along only to the same
  host and port, or from ``ws://host`` to ``wss://host`` on the default
  ports; a cross-origin redirect drops them.

The I/O layers count the redirects (``max_redirects``, default
:data:`wskit.defaults.MAX_REDIRECTS`) and raise
:class:`~wskit.exceptions.RedirectError` beyond.
"""

from __future__ import annotations

import urllib.parse

from .events import Response
from .exceptions import InvalidURI, RedirectError
from .handshake import WSURI, parse_uri

__all__ = ["REDIRECT_STATUSES", "redirect_target", "too_many_redirects", "strip_credentials", "with_credentials"]

REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
"""The statuses a client follows."""

_TO_HTTP = {"ws": "http", "wss": "https"}
_TO_WS = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}


def redirect_target(uri: str, response: Response) -> str | None:
    """Return the URI a redirect response points to, or ``None`` if it is not a redirect.

    Args:
        uri: the URI that was requested (credentials included, if any).
        response: the server's answer to the upgrade request.

    Returns:
        The next ``ws://`` or ``wss://`` URI to request: credentials kept
        only on a same-origin redirect (see the module's rules).

    Raises:
        RedirectError: ``Location`` is missing, repeated or not a usable
            URI, or the redirect goes from ``wss://`` to ``ws://``.
    """
    if response.status_code not in REDIRECT_STATUSES:
        return None
    status = f"{response.status_code} {response.reason_phrase}".rstrip()
    shown = strip_credentials(uri)  # messages never show a password
    locations = response.headers.get_all("Location")
    if len(locations) != 1:
        what = "no Location header" if not locations else f"{len(locations)} Location headers"
        raise RedirectError(f"{shown} answered {status} with {what}", uri=shown, response=response)
    location = locations[0].strip()
    current = parse_uri(uri)
    try:
        target = _resolve(uri, location)
        new = parse_uri(target)
    except (InvalidURI, ValueError) as exc:
        raise RedirectError(f"{shown} answered {status} with an invalid Location {location!r}: {exc}",
                            uri=shown, response=response) from exc
    if current.secure and not new.secure:
        raise RedirectError(f"{shown} answered {status} with Location {location!r}: a redirect from wss:// to ws:// "
                            "would drop TLS; refused", uri=shown, response=response)
    if new.user_info is None and current.user_info is not None and _same_origin(current, new):
        target = with_credentials(target, current.user_info)
    return target


def too_many_redirects(uri: str, count: int, response: Response | None = None) -> RedirectError:
    """The error for a redirect beyond ``max_redirects`` (``count``), the last one answered by ``uri``."""
    shown = strip_credentials(uri)
    return RedirectError(f"more than {count} redirects (the last from {shown}); a redirect loop?",
                         uri=shown, response=response)


def _resolve(uri: str, location: str) -> str:
    if not location:
        raise ValueError("empty")
    # urljoin knows how http(s) URLs resolve relative references; ws(s) follow the same rules.
    scheme, sep, _ = uri.partition("://")
    base = f"{_TO_HTTP[scheme.lower()]}{sep}{strip_credentials(uri).partition('://')[2]}"
    joined = urllib.parse.urljoin(base, location)
    parts = urllib.parse.urlsplit(joined)
    new_scheme = _TO_WS.get(parts.scheme.lower())
    if new_scheme is None:
        raise ValueError(f"scheme {parts.scheme!r} is not ws, wss, http or https")
    if not parts.netloc:
        raise ValueError("no host")
    return urllib.parse.urlunsplit((new_scheme, parts.netloc, parts.path, parts.query, ""))


def _same_origin(old: WSURI, new: WSURI) -> bool:
    if old.host != new.host:
        return False
    if old.secure == new.secure:
        return old.port == new.port
    # ws://host → wss://host on the default ports: the same site, now with TLS.
    return (not old.secure and old.port == 80) and (new.secure and new.port == 443)


def strip_credentials(uri: str) -> str:
    """``uri`` without ``user:password@``."""
    parts = urllib.parse.urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return urllib.parse.urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def with_credentials(uri: str, user_info: tuple[str, str]) -> str:
    """``uri`` with ``user:password@`` set (percent-encoded), replacing any it had."""
    parts = urllib.parse.urlsplit(strip_credentials(uri))
    user, password = (urllib.parse.quote(part, safe="") for part in user_info)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:{password}@{parts.netloc}"))
