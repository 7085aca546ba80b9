"""Fuzz the HTTP/1.1 parsers and the opening handshake (see fuzz_targets.py for the contracts)."""

from __future__ import annotations

from fuzz_strategies import FUZZ, chunk_sizes, http_requests, http_responses
from fuzz_targets import check_client_handshake, check_request_parser, check_response_parser, check_server_handshake
from hypothesis import given
from hypothesis import strategies as st


@FUZZ
@given(http_requests, chunk_sizes, st.booleans())
def test_fuzz_request_parser(data: bytes, sizes: list[int], small: bool) -> None:
    check_request_parser(data, sizes, small)


@FUZZ
@given(http_responses, chunk_sizes, st.booleans())
def test_fuzz_response_parser(data: bytes, sizes: list[int], small: bool) -> None:
    check_response_parser(data, sizes, small)


@FUZZ
@given(http_requests, chunk_sizes)
def test_fuzz_server_handshake(data: bytes, sizes: list[int]) -> None:
    check_server_handshake(data, sizes)


@FUZZ
@given(http_responses, chunk_sizes)
def test_fuzz_client_handshake(data: bytes, sizes: list[int]) -> None:
    check_client_handshake(data, sizes)
