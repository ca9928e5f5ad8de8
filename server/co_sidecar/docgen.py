"""Writes the docs generated from the models: `python -m co_sidecar.docgen [--check]`.

Tests run `--check` so a model change without regenerated docs fails.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path

from .manifest import manifest_json_schema

DOCS = Path(__file__).resolve().parents[2] / "docs"


def manifest_schema_text() -> str:
    return json.dumps(manifest_json_schema(), indent=2) + "\n"


GENERATED: dict[str, Callable[[], str]] = {
    "manifest.schema.json": manifest_schema_text,
}


def stale(docs: Path = DOCS) -> list[str]:
    return [
        name
        for name, render in GENERATED.items()
        if not (docs / name).is_file() or (docs / name).read_text(encoding="utf-8") != render()
    ]


def main(argv: list[str]) -> int:
    if "--check" in argv:
        names = stale()
        for name in names:
            print(f"docs/{name} is stale: run python -m co_sidecar.docgen", file=sys.stderr)
        return 1 if names else 0
    for name, render in GENERATED.items():
        (DOCS / name).write_text(render(), encoding="utf-8")
        print(f"wrote docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
