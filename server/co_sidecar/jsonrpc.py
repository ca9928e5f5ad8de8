"""A cattrs converter that keeps params/results of custom methods as plain JSON.

pygls turns unknown-method params into namedtuples, which lose keys that are not identifiers.
The clients (`co-sidecar run`, the tests) use this converter as it is; the server's
(`transport.server_converter`) adds the co/* request type, whose params are pydantic models.
"""

from __future__ import annotations

import functools
from typing import Any

import attrs
from cattrs import Converter
from lsprotocol import converters
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage


@functools.cache
def lsp_converter() -> Converter:
    """lsprotocol's converter, for turning wire JSON into lsprotocol types."""
    return converters.get_converter()


def _as_is(obj: dict[str, Any], cls: type) -> Any:
    return cls(**obj)


def _shallow(obj: Any) -> dict[str, Any]:
    """Envelope fields only: `json.dumps` serializes plain payloads itself and hands any attrs
    value inside back to pygls's default hook, so walking a large plain result (a 1,000-run
    co/list) through cattrs is wasted work."""
    out = {field.name: getattr(obj, field.name) for field in attrs.fields(type(obj))}
    if out.get("params", ...) is None:
        del out["params"]  # JSON-RPC: params is omitted, never null
    return out


def plain_converter() -> Converter:
    converter = converters.get_converter()
    for message in (JsonRPCRequestMessage, JsonRPCResponseMessage, JsonRPCNotification):
        converter.register_structure_hook(message, _as_is)
        converter.register_unstructure_hook(message, _shallow)
    return converter
