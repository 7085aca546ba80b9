"""One constant per default: the version, the limits and the timeouts.

Every layer (the sans-I/O core, the asyncio and sync layers, the YAML
configuration schema) takes its defaults from here, so they cannot drift.
"""

from __future__ import annotations

__all__ = [
    "VERSION",
    "USER_AGENT",
    "MAX_SIZE",
    "MAX_QUEUE",
    "WRITE_LIMIT",
    "OPEN_TIMEOUT",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "CLOSE_TIMEOUT",
    "MAX_REDIRECTS",
    "BACKOFF_INITIAL",
    "BACKOFF_FACTOR",
    "BACKOFF_MAX",
    "BACKOFF_JITTER",
]

VERSION = "0.1.0"
"""wskit's version (``wskit.__version__``)."""

USER_AGENT = f"wskit/{VERSION}"
"""The ``User-Agent`` (client) and ``Server`` (server) header value."""

MAX_SIZE = 2**20
"""Largest received message, in bytes, after decompression (1 MiB)."""

MAX_QUEUE = 16
"""Received messages an I/O layer buffers before it stops reading."""

WRITE_LIMIT = 32768
"""High-water mark of an I/O layer's write buffer, in bytes."""

OPEN_TIMEOUT = 10.0
"""Seconds allowed for the opening handshake."""

PING_INTERVAL = 20.0
"""Seconds between keepalive pings."""

PING_TIMEOUT = 20.0
"""Seconds a keepalive ping waits for its pong."""

CLOSE_TIMEOUT = 10.0
"""Seconds the closing handshake may take before the transport is aborted."""

MAX_REDIRECTS = 10
"""Redirects a client follows during one opening handshake."""

BACKOFF_INITIAL = 1.0
"""Seconds before a reconnecting client's first retry (before jitter)."""

BACKOFF_FACTOR = 2.0
"""Each further retry of a reconnecting client waits this many times longer."""

BACKOFF_MAX = 60.0
"""Longest wait between two retries of a reconnecting client, in seconds."""

BACKOFF_JITTER = 0.5
"""Fraction of each retry delay drawn at random (0: none; 1: anywhere from 0 to the delay)."""
