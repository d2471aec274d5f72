"""The code keeps its shape: type hints checked strictly, lint clean."""

from __future__ import annotations

import subprocess
import sys

from gateway.settings import PROJECT_DIR


def run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *command], cwd=PROJECT_DIR,
                          capture_output=True, text=True, timeout=300)


def test_type_hints_check_strictly() -> None:
    result = run("mypy", "gateway")
    assert result.returncode == 0, result.stdout + result.stderr


def test_lint_is_clean() -> None:
    result = run("ruff", "check", "gateway", "tests", "bench", "dev.py")
    assert result.returncode == 0, result.stdout + result.stderr
