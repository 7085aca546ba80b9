"""wskit-prefix: an example third-party wskit plugin with its own WebSocket extension.

The ``x-wskit-prefix`` extension puts ``[label] `` in front of every text
message sent and strips it from every text message received. It grew out of
the ``SimpleExtension`` example of the websockets documentation, made into
something two peers negotiate:

- Negotiation (RFC 6455 §9.1): the client offers
  ``Sec-WebSocket-Extensions: x-wskit-prefix; label=wskit``; a server that
  has the plugin accepts with the same ``label``; a server without it
  ignores the offer and the connection goes on without prefixes.
- RSV bits (RFC 6455 §5.2): the extension claims none (``rsv_mask = 0``).
  RSV bits let a receiver tell transformed frames from untransformed ones;
  here every text message of the connection carries the prefix, which both
  peers agreed on in the handshake, so no frame needs a mark. Claiming a bit
  would also take it from other extensions (permessage-deflate uses RSV1).
  A frame with RSV2/RSV3 set is still rejected with 1002 by wskit unless
  another extension claims that bit.
- The prefix is added to the first frame of a text message (opcode TEXT);
  continuation, binary and control frames pass through unchanged. A text
  message that arrives without the prefix is a protocol error (1002).
- Stacking: with permessage-deflate also negotiated, the order of the
  server's answer decides which transform runs first on send; wskit reverses
  the order on receipt, so either order round-trips.

The plugin provides the factories through the two public hooks
``wskit_client_extension_factories`` / ``wskit_server_extension_factories``
and is found through the ``wskit`` entry-point group (see ``pyproject.toml``).

Configuration: the plugin declares the ``prefix`` section of wskit's YAML
configuration (``wskit_add_config``) and checks it as a whole
(``wskit_configure``)::

    prefix:
      enabled: true        # offer (client) / accept (server) x-wskit-prefix
      label: chat          # the label a client asks for
      labels: [chat, v2]   # the labels a server accepts (null: any)

The loader reports a bad value as ``FILE:LINE: prefix.label: message``, like
every wskit key. The validated section reaches the factory hooks as
``options["prefix"]``; in code, ``options["prefix"]`` may also be
``False``/``None`` (off) or ``True`` (defaults).
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from wskit import hookimpl
from wskit.exceptions import ConfigError, NegotiationError, ProtocolError
from wskit.extensions.base import ClientExtensionFactory, Extension, ExtensionParameter, ServerExtensionFactory
from wskit.frames import Frame, Opcode

if TYPE_CHECKING:  # pragma: no cover
    from wskit.configschema import ConfigSchema, PluginConfig

__all__ = [
    "EXTENSION_NAME",
    "DEFAULT_LABEL",
    "PrefixExtension",
    "ClientPrefixFactory",
    "ServerPrefixFactory",
    "SECTION",
    "wskit_add_config",
    "wskit_configure",
    "wskit_client_extension_factories",
    "wskit_server_extension_factories",
]

__version__ = "0.1.0"

EXTENSION_NAME = "x-wskit-prefix"
"""The extension token negotiated in ``Sec-WebSocket-Extensions``."""

DEFAULT_LABEL = "wskit"

SECTION = "prefix"
"""The plugin's section of wskit's YAML configuration."""

# A label travels as a header parameter value: keep it a short token
# (RFC 7230 §3.2.6) so that it never needs quoting.
_LABEL = re.compile(r"[A-Za-z0-9_.-]{1,32}")


_LABEL_RULE = "a label is 1-32 characters among A-Z a-z 0-9 _ . -"


def _check_label(label: object, where: str) -> str:
    if not isinstance(label, str) or not _LABEL.fullmatch(label):
        raise ConfigError(f"{where}: {_LABEL_RULE}, got {label!r}")
    return label


def _label_value(label: str) -> None:
    """The YAML check of ``prefix.label``: the loader adds the file, line and key."""
    if not _LABEL.fullmatch(label):
        raise ValueError(f"{_LABEL_RULE}, got {label!r}")


def _labels_value(labels: Sequence[str]) -> None:
    """The YAML check of ``prefix.labels``."""
    if not labels:
        raise ValueError("an empty list accepts no label: set 'enabled: false' to turn the extension off")
    for label in labels:
        _label_value(label)


class PrefixExtension(Extension):
    """The negotiated ``x-wskit-prefix`` extension of one connection.

    Args:
        label: the label; the wire prefix is ``[label] `` in UTF-8.
    """

    name = EXTENSION_NAME
    rsv_mask = 0  # marks no frame: see the module docstring

    def __init__(self, label: str = DEFAULT_LABEL) -> None:
        super().__init__()
        self.label = _check_label(label, EXTENSION_NAME)
        self.prefix = f"[{label}] ".encode()

    def encode(self, frame: Frame) -> Frame:
        """Put the prefix in front of the first frame of a text message."""
        if frame.opcode == Opcode.TEXT:
            return frame._replace(data=self.prefix + frame.data)
        return frame

    def decode(self, frame: Frame, *, max_size: int | None = None) -> Frame:
        """Strip the prefix from the first frame of a text message.

        Raises:
            ProtocolError: (close code 1002) if the text message does not
                start with the prefix.
        """
        if frame.opcode == Opcode.TEXT:
            prefix = self.prefix
            if not frame.data.startswith(prefix):
                raise ProtocolError(f"{EXTENSION_NAME}: a text message does not start with {prefix!r} "
                                    f"(starts with {bytes(frame.data[:len(prefix)])!r})", close_code=1002)
            return frame._replace(data=frame.data[len(prefix):])
        return frame

    def __repr__(self) -> str:
        return f"<PrefixExtension {self.label!r}>"


def _label_param(params: Sequence[ExtensionParameter], side: str) -> str | None:
    label: str | None = None
    seen = False
    for key, value in params:
        if key != "label":
            raise NegotiationError(f"{EXTENSION_NAME}: unknown parameter {key!r} in the {side}")
        if seen:
            raise NegotiationError(f"{EXTENSION_NAME}: parameter 'label' repeated in the {side}")
        seen = True
        if value is None or not _LABEL.fullmatch(value):
            raise NegotiationError(f"{EXTENSION_NAME}: invalid label {value!r} in the {side}")
        label = value
    return label


class ClientPrefixFactory(ClientExtensionFactory):
    """Offer ``x-wskit-prefix`` from a client.

    Args:
        label: the label to ask for.

    Raises:
        ConfigError: if ``label`` is not a short token.
    """

    name = EXTENSION_NAME

    def __init__(self, label: str = DEFAULT_LABEL) -> None:
        self.label = _check_label(label, f"{EXTENSION_NAME} client")

    def get_request_params(self) -> list[ExtensionParameter]:
        """Offer ``label=<label>``."""
        return [("label", self.label)]

    def process_response_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> Extension:
        """Accept the server's answer if it confirms our label.

        Raises:
            NegotiationError: unknown parameter, or a label other than ours.
        """
        label = _label_param(params, "response")
        if label is not None and label != self.label:
            raise NegotiationError(f"{EXTENSION_NAME}: the server answered label={label!r}, "
                                   f"we offered {self.label!r}")
        return PrefixExtension(self.label)


class ServerPrefixFactory(ServerExtensionFactory):
    """Accept ``x-wskit-prefix`` offers on a server.

    Args:
        labels: the labels to accept; ``None`` (default) accepts any.

    Raises:
        ConfigError: if a label is not a short token.
    """

    name = EXTENSION_NAME

    def __init__(self, labels: Collection[str] | None = None) -> None:
        where = f"{EXTENSION_NAME} server"
        self.labels = None if labels is None else frozenset(_check_label(x, where) for x in labels)

    def process_request_params(
        self, params: Sequence[ExtensionParameter], accepted_extensions: Sequence[Extension]
    ) -> tuple[list[ExtensionParameter], Extension]:
        """Accept an offer; answer with the label the client asked for.

        Raises:
            NegotiationError: to decline: unknown parameter, a label we do
                not accept, or the extension was already accepted.
        """
        if any(ext.name == EXTENSION_NAME for ext in accepted_extensions):
            raise NegotiationError(f"{EXTENSION_NAME}: already accepted")
        label = _label_param(params, "offer") or DEFAULT_LABEL
        if self.labels is not None and label not in self.labels:
            raise NegotiationError(f"{EXTENSION_NAME}: label {label!r} is not accepted")
        return [("label", label)], PrefixExtension(label)


@hookimpl
def wskit_add_config(schema: ConfigSchema) -> None:
    """Declare the ``prefix`` section of wskit's YAML configuration."""
    section = schema.section(SECTION, f"The `{EXTENSION_NAME}` extension of the example plugin `wskit-prefix`. "
                             "`prefix: false` turns it off.")
    section.add("enabled", "bool", True, f"Offer (client) or accept (server) `{EXTENSION_NAME}`.")
    section.add("label", "str", DEFAULT_LABEL, "The label a client asks for (the prefix is `[label] `).",
                check=_label_value)
    section.add("labels", "strlist", None, "The labels a server accepts. null: any.", nullable=True,
                check=_labels_value)


@hookimpl
def wskit_configure(config: PluginConfig) -> None:
    """Refuse a file whose client ``label`` its own server ``labels`` would decline."""
    labels = config.get("prefix.labels")
    label = config.get("prefix.label")
    if config.is_set("prefix.label") and labels is not None and label not in labels:
        config.error("prefix.label", f"{label!r} is not among prefix.labels ({', '.join(labels)}): a client and "
                     "a server configured by this file would not agree")


def _settings(options: Mapping[str, Any]) -> Mapping[str, Any] | None:
    value = options.get(SECTION, True)
    if value is None or value is False:
        return None
    if value is True:
        return {}
    if isinstance(value, Mapping):
        return value if value.get("enabled", True) else None
    raise ConfigError(f"prefix: expected true, false or a mapping of settings, got {value!r}")


@hookimpl
def wskit_client_extension_factories(options: dict[str, Any]) -> list[ClientExtensionFactory] | None:
    """Offer ``x-wskit-prefix`` (``options["prefix"]["label"]``) unless ``options["prefix"]`` turns it off."""
    settings = _settings(options)
    if settings is None:
        return None
    return [ClientPrefixFactory(settings.get("label") or DEFAULT_LABEL)]


@hookimpl
def wskit_server_extension_factories(options: dict[str, Any]) -> list[ServerExtensionFactory] | None:
    """Accept ``x-wskit-prefix`` (the labels ``options["prefix"]["labels"]``) unless ``options["prefix"]`` turns
    it off."""
    settings = _settings(options)
    if settings is None:
        return None
    return [ServerPrefixFactory(settings.get("labels"))]
