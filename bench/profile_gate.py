"""Where a gate request's time goes: py-spy samples the gateway under wrk load, for a
cached segment and a cached playlist from each kind of origin, and prints the functions
with the most samples, inclusive (on the stack) and own (at the top of it).

    .venv/bin/pip install py-spy   # a profiler, not a dependency of the service
    .venv/bin/python -m bench.profile_gate [seconds] [top]

The same setup as bench/gate_vs_nginx.py. Samples are taken while the gateway runs
Python or a C call made from it (a send() counts; waiting in epoll does not).
"""

from __future__ import annotations

import collections
import shutil
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from bench.gate_vs_nginx import OBJECTS, running_systems
from bench.tools import wrk


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        sys.exit("bench: py-spy is needed (.venv/bin/pip install py-spy)")
    return found


def profile(pid: int, url: str, seconds: int) -> collections.Counter[str]:
    """Samples per stack, in py-spy's collapsed form ("frame;frame;frame count")."""
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        spy = subprocess.Popen([py_spy(), "record", "--pid", str(pid), "--rate", "250",
                                "--duration", str(seconds + 1), "--format", "raw",
                                "--output", out.name, "--nonblocking"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wrk(url, seconds=seconds)
        spy.wait()
        stacks: collections.Counter[str] = collections.Counter()
        for line in Path(out.name).read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            stacks[stack] += int(count)
    return stacks


def frame_name(frame: str) -> str:
    """`serve (gateway/handlers/hls.py:33)` -> `serve (gateway/handlers/hls.py)`."""
    name, _, where = frame.partition(" (")
    file = where.split(":")[0].rstrip(")")
    for marker in ("site-packages/", "/gateway/", "lib/python3"):
        if marker in file:
            file = file.split(marker, 1)[1]
            file = ("gateway/" + file) if marker == "/gateway/" else file
            break
    return f"{name} ({file})"


def report(title: str, stacks: collections.Counter[str], top: int) -> None:
    total = sum(stacks.values())
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    for stack, count in stacks.items():
        frames = [frame_name(frame) for frame in stack.split(";")]
        for frame in set(frames):
            inclusive[frame] += count
        own[frames[-1]] += count
    print(f"\n## {title}: {total} samples\n")
    print("| inclusive | own | function |")
    print("| ---: | ---: | --- |")
    for frame, count in inclusive.most_common(top):
        print(f"| {100 * count / total:.0f}% | {100 * own[frame] / total:.0f}% | {frame} |")
    print("\nmost own time:", ", ".join(
        f"{frame} {100 * count / total:.0f}%" for frame, count in own.most_common(8)))


def main(seconds: int, top: int) -> None:
    with running_systems(pinned=False, uvloop=False) as bench:
        for name in ("gate, directory origin", "gate, HTTP origin", "bare"):
            system = bench.systems[name]
            for kind, file in OBJECTS.items():
                url = f"{system.url}/{file}"
                urllib.request.urlopen(url, timeout=5).close()
                report(f"{kind}, {name}", profile(system.pids[0], url, seconds), top)


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 5,
         int(sys.argv[2]) if len(sys.argv) > 2 else 30)
