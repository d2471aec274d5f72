"""The READMEs name files, functions and routes; a reader following one must find it.
Every file path in backticks exists (from the repository, `gateway/` or `tests/`, or
anywhere for a bare file name), every `file.py:name` defines that name, and every local
page they send a reader to is a route of the app."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from gateway.app import create_app
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parent.parent
READMES = [ROOT / "README.md", ROOT / "bench" / "README.md"]
FILE = re.compile(r"`((?:\.\./)?[\w./-]+\.(?:py|md|toml|cfg|json|html|js|css|sh|lock))"
                  r"(?::(\w+))?`")
LOCAL_PAGE = re.compile(r"https?://(?:127\.0\.0\.1|localhost):8080(/[\w/-]*)")


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()
    return listed


def resolve(path: str, files: list[str]) -> Path | None:
    if path.startswith("../"):
        return (ROOT / path) if (ROOT / path).exists() else None
    for base in ("", "gateway/", "tests/"):
        if base + path in files:
            return ROOT / (base + path)
    suffix = "/" + path
    found = [name for name in files if name.endswith(suffix)]
    return ROOT / found[0] if len(found) == 1 else None


@pytest.mark.parametrize("readme", READMES, ids=lambda path: path.relative_to(ROOT).as_posix())
def test_every_file_and_name_the_readme_points_to_exists(readme: Path) -> None:
    files = tracked_files()
    missing = []
    for match in FILE.finditer(readme.read_text()):
        path, name = match.groups()
        if path.startswith("../shared/") and not (ROOT / path).exists():
            continue  # the product's contract, beside the repository, not in it
        found = resolve(path, files)
        if found is None:
            missing.append(path)
        elif name and found.suffix == ".py" and not re.search(
                rf"^\s*(?:async def|def|class) {name}\b|^{name}\b.*=", found.read_text(),
                re.MULTILINE):
            missing.append(f"{path}:{name}")
    assert not missing, f"{readme.name} names what is not there: {missing}"


async def test_every_local_page_the_readme_sends_a_reader_to_exists(tmp_path: Path) -> None:
    app = create_app(make_settings(tmp_path, GATEWAY_API_KEY="k" * 24))
    paths = {match.group(1) for readme in READMES
             for match in LOCAL_PAGE.finditer(readme.read_text())}
    assert paths
    unrouted = [path for path in sorted(paths)
                if not any(resource.canonical == path.rstrip("/") or resource.canonical == path
                           for resource in app.router.resources())]
    assert unrouted == []


def test_every_log_line_the_readme_names_is_written_by_the_service() -> None:
    """An operator greps the log for the names the README gives: each is an event the
    service logs (a `log_event` name, written as a string in the code)."""
    text = READMES[0].read_text()
    source = "\n".join(path.read_text() for path in (ROOT / "gateway").rglob("*.py"))
    named = {match.group(1) for match in re.finditer(r"`([a-z]+(?:_[a-z]+)+)`", text)
             if re.search(r"\blog\b|\blines?\b",
                          text[max(0, match.start() - 100):match.end() + 100])}
    assert not {name for name in named if f'"{name}"' not in source}
