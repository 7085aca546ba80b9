"""Tests for the sans-I/O router (wskit.routing) and redirect rules (wskit.redirects) at their edges: a
converter that refuses a path with its own error, a status without a standard phrase, a Location
without a host."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from werkzeug.routing import BaseConverter, Map, Rule

from wskit.events import Request, Response
from wskit.exceptions import RedirectError
from wskit.headers import Headers
from wskit.redirects import redirect_target
from wskit.routing import Match, Router, plain_response


class YearConverter(BaseConverter):
    """Turns a path segment into a date; out of range years raise ValueError, as date() does."""

    regex = r"\d+"

    def to_python(self, value: str) -> datetime.date:
        return datetime.date(int(value), 1, 1)


def test_a_path_a_converter_cannot_read_is_answered_400() -> None:
    def archive(ws: Any, year: datetime.date) -> None: ...

    router = Router(Map([Rule("/archive/<year:year>", endpoint=archive)], converters={"year": YearConverter}))
    headers = Headers([("Host", "127.0.0.1")])
    assert router.match(Request("/archive/2024", headers)) == Match(archive, {"year": datetime.date(2024, 1, 1)},
                                                                      "/archive/<year:year>")
    answer = router.match(Request("/archive/99999", headers))
    assert not isinstance(answer, Match)
    assert (answer.status_code, answer.reason_phrase) == (400, "Bad Request")
    assert answer.body == b"Bad request target: ValueError\n"
    assert answer.headers["Connection"] == "close"


def test_plain_response_with_a_status_without_a_standard_phrase() -> None:
    response = plain_response(599, "custom\n")
    assert (response.status_code, response.reason_phrase, response.body) == (599, "", b"custom\n")
    assert response.headers["Content-Length"] == "7"


# -- redirects (wskit.redirects): a Location without a host ----------------------------------------


def test_a_redirect_to_a_location_without_a_host_is_refused() -> None:
    moved = Response(302, "Found", Headers([("Location", "wss:")]))
    with pytest.raises(RedirectError, match=r"ws://a\.example/ answered 302 Found with an invalid Location 'wss:': "
                                            "no host") as info:
        redirect_target("ws://a.example/", moved)
    assert info.value.response is moved
