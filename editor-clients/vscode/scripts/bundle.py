"""Put the co-sidecar server and its Python dependencies into the extension (bundled/libs).

    python scripts/bundle.py --target linux-x64     # bundled/libs + bundled/manifest.json
    python scripts/bundle.py --lock                 # regenerate bundled/requirements.txt

pydantic-core is compiled, so each VS Code target (linux-x64, linux-arm64, darwin-arm64,
win32-x64) gets its own bundled/libs: the pinned wheels of bundled/requirements.txt for that
platform, fetched with `pip install --target --platform --only-binary=:all:` once per CPython
version in PYTHONS and merged (their compiled modules have distinct names, e.g.
_pydantic_core.cpython-312-x86_64-linux-gnu.so, so one tree serves every version). The
third-party part is cached under ~/.cache/co-sidecar/vscode-libs/<hash of the lock>/<target>;
the co_sidecar package itself is copied from server/ on every run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

EXT = Path(__file__).resolve().parents[1]
ROOT = EXT.parents[1]
BUNDLED = EXT / "bundled"
LOCK = BUNDLED / "requirements.txt"
PYTHONS = ("3.11", "3.12", "3.13", "3.14")
# pip --platform tags per VS Code target (the oldest tag each wheel we pin is built for).
PLATFORMS: dict[str, tuple[str, ...]] = {
    "linux-x64": ("manylinux_2_17_x86_64", "manylinux2014_x86_64"),
    "linux-arm64": ("manylinux_2_17_aarch64", "manylinux2014_aarch64"),
    "darwin-arm64": ("macosx_11_0_arm64",),
    "win32-x64": ("win_amd64",),
}


def pip(*args: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)  # noqa: S603 (our own argv)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
        raise SystemExit(f"bundle: pip failed (exit {proc.returncode}): {' '.join(cmd)}")


def cache_dir(target: str) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    key = hashlib.sha256(LOCK.read_bytes() + ",".join(PYTHONS).encode()).hexdigest()[:12]
    return base / "co-sidecar" / "vscode-libs" / key / target


def third_party(target: str) -> Path:
    """The pinned dependencies for one target, all CPython versions merged (cached)."""
    done = cache_dir(target)
    if (done / ".complete").exists():
        return done
    shutil.rmtree(done, ignore_errors=True)
    with tempfile.TemporaryDirectory(prefix="co-bundle-") as tmp:
        merged = Path(tmp) / "libs"
        for version in PYTHONS:
            into = Path(tmp) / version
            platform_args = [a for tag in PLATFORMS[target] for a in ("--platform", tag)]
            pip(
                "install", "--quiet", "--no-deps", "--no-compile", "--only-binary=:all:",
                "--implementation", "cp", "--python-version", version, *platform_args,
                "--target", str(into), "-r", str(LOCK),
            )  # fmt: skip
            shutil.copytree(into, merged, dirs_exist_ok=True)
        shutil.rmtree(merged / "bin", ignore_errors=True)  # console scripts for another machine
        done.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(merged, done)
    (done / ".complete").touch()
    return done


def bundle(target: str) -> Path:
    libs = BUNDLED / "libs"
    shutil.rmtree(libs, ignore_errors=True)
    shutil.copytree(third_party(target), libs, ignore=shutil.ignore_patterns(".complete"))
    shutil.copytree(
        ROOT / "server" / "co_sidecar",
        libs / "co_sidecar",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    version = re.search(
        r'__version__ = "([^"]+)"', (ROOT / "server" / "co_sidecar" / "__init__.py").read_text()
    )
    manifest = {
        "target": target,
        "pythons": list(PYTHONS),
        "coSidecar": version[1] if version else None,
    }
    (BUNDLED / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return libs


def lock() -> None:
    """bundled/requirements.txt: what `pip install .` resolves for the server (no dev extras)."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        pip(
            "install",
            "--quiet",
            "--dry-run",
            "--ignore-installed",
            "--report",
            str(report),
            str(ROOT),
        )
        installed = json.loads(report.read_text())["install"]
    pins = sorted(
        f"{i['metadata']['name']}=={i['metadata']['version']}"
        for i in installed
        if i["metadata"]["name"] != "co-sidecar"
    )
    header = "# The server's runtime dependencies, pinned for the extension's bundled/libs.\n"
    header += "# Regenerate: python editor-clients/vscode/scripts/bundle.py --lock\n"
    LOCK.write_text(header + "\n".join(pins) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--target", choices=sorted(PLATFORMS))
    parser.add_argument("--lock", action="store_true", help="regenerate bundled/requirements.txt")
    args = parser.parse_args(argv)
    if args.lock:
        lock()
        print(f"bundle: wrote {LOCK}")
    if args.target:
        libs = bundle(args.target)
        print(f"bundle: {args.target} server and libraries in {libs}")
    if not (args.lock or args.target):
        parser.error("give --target or --lock")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
