"""A cattrs converter that keeps params/results of custom methods as plain JSON.

pygls turns unknown-method params into namedtuples, which lose keys that are
not identifiers and make validation awkward; co/* methods want dicts.
"""

from __future__ import annotations

import functools
from typing import Any

from cattrs import Converter
from lsprotocol import converters
from pygls.protocol import JsonRPCNotification, JsonRPCRequestMessage, JsonRPCResponseMessage


@functools.cache
def lsp_converter() -> Converter:
    """lsprotocol's converter, for turning wire JSON into lsprotocol types."""
    return converters.get_converter()


def _as_is(obj: dict[str, Any], cls: type) -> Any:
    return cls(**obj)


def plain_converter() -> Converter:
    converter = converters.get_converter()
    for message in (JsonRPCRequestMessage, JsonRPCResponseMessage, JsonRPCNotification):
        converter.register_structure_hook(message, _as_is)
    return converter
