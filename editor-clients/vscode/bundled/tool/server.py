"""Starts the co-sidecar server (stdio) for the VS Code extension.

The extension runs this file with the chosen interpreter. bundled/libs holds the server and
its dependencies (scripts/bundle.py). CO_SIDECAR_IMPORT_STRATEGY is the
`co-sidecar.importStrategy` setting: "useBundled" puts bundled/libs first on sys.path,
"fromEnvironment" last, so an installed co-sidecar (and its dependencies) wins.
"""

import os
import sys

LIBS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "libs")

# Kept: this file runs with whatever interpreter the user configured, old ones included.
if sys.version_info < (3, 11):  # noqa: UP036
    sys.stderr.write(
        f"co-sidecar: the server needs Python 3.11 or newer; {sys.executable} is {sys.version_info[0]}.{sys.version_info[1]}. "
        "Set co-sidecar.interpreter to a newer Python.\n"
    )
    sys.exit(3)

if os.environ.get("CO_SIDECAR_IMPORT_STRATEGY") == "fromEnvironment":
    sys.path.append(LIBS)
else:
    sys.path.insert(0, LIBS)

try:
    from co_sidecar.cli import main
except ImportError as err:
    sys.stderr.write(
        f"co-sidecar: cannot import the server with {sys.executable} ({err}). "
        "With co-sidecar.importStrategy = fromEnvironment, install co-sidecar into that "
        "environment; otherwise use the default, useBundled.\n"
    )
    sys.exit(3)

sys.exit(main(["serve", *sys.argv[1:]]))
