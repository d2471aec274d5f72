#!/usr/bin/env python3
"""The two commands of the README's quick start, needing nothing but Python 3.11+.

    python3 dev.py serve   # make .venv, install the service, run it on the embedded default
    python3 dev.py test    # make .venv, install the test tools, run the whole suite

Anything after the command is passed on (`python3 dev.py test -k qris -x`). Installs are
redone only when setup.cfg, pyproject.toml or package-lock.json change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")


def _fingerprint(*names: str) -> str:
    digest = hashlib.sha256()
    for name in names:
        path = ROOT / name
        digest.update(path.read_bytes() if path.exists() else b"-")
    return digest.hexdigest()


def ensure_python_packages(extras: str) -> None:
    if not (BIN / "python").exists():
        print(f"dev.py: creating {VENV.relative_to(ROOT)}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    stamp = VENV / f".installed-{extras or 'base'}"
    fingerprint = _fingerprint("setup.cfg", "pyproject.toml")
    if stamp.exists() and stamp.read_text() == fingerprint:
        return
    target = f".[{extras}]" if extras else "."
    print(f"dev.py: installing {target} into .venv", file=sys.stderr)
    subprocess.run([str(BIN / "python"), "-m", "pip", "install", "--quiet",
                    "--disable-pip-version-check", "-e", target], cwd=ROOT, check=True)
    stamp.write_text(fingerprint)


def ensure_player_assets() -> None:
    """hls.js comes from the npm registry, pinned by package-lock.json, never committed.
    Without npm the player still works where the browser plays HLS natively."""
    if not (ROOT / "package.json").exists():
        return
    npm = shutil.which("npm")
    if npm is None:
        print("dev.py: npm not found: skipping hls.js (native HLS only)", file=sys.stderr)
        return
    stamp = ROOT / "node_modules" / ".installed"
    fingerprint = _fingerprint("package.json", "package-lock.json")
    if stamp.exists() and stamp.read_text() == fingerprint:
        return
    print("dev.py: npm ci (hls.js, uPlot)", file=sys.stderr)
    subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                   cwd=ROOT, check=True)
    stamp.write_text(fingerprint)


def main(argv: list[str]) -> int:
    if sys.version_info < (3, 11):
        print("dev.py: Python 3.11 or newer is needed", file=sys.stderr)
        return 2
    if not argv or argv[0] not in ("serve", "test"):
        print(__doc__, file=sys.stderr)
        return 2
    command, rest = argv[0], argv[1:]
    os.chdir(ROOT)
    if command == "serve":
        ensure_python_packages("")
        ensure_player_assets()
        args = [str(BIN / "gateway"), "serve", *rest]
    else:
        ensure_python_packages("test")
        ensure_player_assets()
        args = [str(BIN / "python"), "-m", "pytest", *rest]
    if os.name == "nt":
        return subprocess.call(args)
    os.execv(args[0], args)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
