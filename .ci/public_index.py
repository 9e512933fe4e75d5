# ruff: noqa: T201  (a CI script: its printed lines are its output)
"""Check that every pin of a constraints file resolves on the public package index alone.

    python .ci/public_index.py [requirements/constraints.txt] [--index-url URL]

pip's resolver runs in ``--dry-run`` mode with ``--ignore-installed``: it reads wheel metadata
(PEP 658 files, kilobytes each) and installs and downloads nothing. pip runs isolated from
this machine's pip configuration and ``PIP_*`` variables (extra indexes, wheel folders,
caps), so only the public index is asked. Every pin must be in the resolution at its pinned
version, and every file must come from the index's own hosts.

Exit 0 when all pins resolve, or when the index cannot be reached (one line says the check
was skipped: CI on a machine without the network stays green); 1 when a pin does not
resolve; 2 for a bad constraints file.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlparse

PUBLIC_INDEX = "https://pypi.org/simple"
#: Where PyPI serves its files from (the index URL's own host serves the pages).
PUBLIC_FILE_HOSTS = ("files.pythonhosted.org",)
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def canonical(name: str) -> str:
    """A project name as the index compares names (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of every ``name==version`` line; comments and blank lines
    are skipped, anything else is refused (a constraints file of exact pins only)."""
    pins: dict[str, str] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        match = _PIN.match(line)
        if match is None:
            raise ValueError(f"{path}:{number}: not an exact pin (name==version): {raw!r}")
        name = canonical(match[1])
        if name in pins:
            raise ValueError(f"{path}:{number}: {match[1]} is pinned twice")
        pins[name] = match[2]
    if not pins:
        raise ValueError(f"{path}: no pins")
    return pins


def index_unreachable(index_url: str, *, timeout: float = 15.0) -> str | None:
    """Why the index cannot be reached (one short phrase), or None when it answers."""
    try:
        with urllib.request.urlopen(f"{index_url.rstrip('/')}/pip/", timeout=timeout):
            return None
    except urllib.error.HTTPError as err:
        return f"HTTP {err.code}"
    except (urllib.error.URLError, OSError) as err:
        return str(getattr(err, "reason", err))


def check_report(report: dict, pins: dict[str, str], index_url: str) -> list[str]:
    """Problems of a ``pip install --report`` resolution against ``pins`` (empty: none)."""
    hosts = {urlparse(index_url).hostname, *PUBLIC_FILE_HOSTS}
    resolved: dict[str, str] = {}
    problems = []
    for item in report.get("install", []):
        name = canonical(item["metadata"]["name"])
        resolved[name] = item["metadata"]["version"]
        url = item.get("download_info", {}).get("url", "")
        if urlparse(url).hostname not in hosts:
            problems.append(f"{name} would come from {url or 'nowhere'}, not the public index")
    for name, version in sorted(pins.items()):
        if name not in resolved:
            problems.append(f"{name}=={version} is not in the resolution")
        elif resolved[name] != version:
            problems.append(f"{name}=={version} resolved as {resolved[name]}")
    return problems


def resolve(constraints: Path, index_url: str) -> dict:
    """pip's resolution of every pin as a requirement, on ``index_url`` alone."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull  # no global/user/site pip configuration
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        command = [
            sys.executable, "-m", "pip", "install", "--isolated", "--dry-run",
            "--ignore-installed", "--quiet", "--disable-pip-version-check", "--no-input",
            "--index-url", index_url, "--report", str(report), "-r", str(constraints),
        ]  # fmt: skip
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"pip could not resolve the pins (exit code {done.returncode})")
        return json.loads(report.read_text())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default = Path(__file__).resolve().parent.parent / "requirements" / "constraints.txt"
    parser.add_argument("constraints", nargs="?", type=Path, default=default)
    parser.add_argument("--index-url", default=PUBLIC_INDEX)
    args = parser.parse_args(argv)
    try:
        pins = read_pins(args.constraints)
    except (OSError, ValueError) as err:
        print(f"public index check: error: {err}", file=sys.stderr)
        return 2
    why = index_unreachable(args.index_url)
    if why is not None:
        print(f"public index check SKIPPED: {args.index_url} cannot be reached ({why})")
        return 0
    try:
        report = resolve(args.constraints, args.index_url)
    except RuntimeError as err:
        print(f"public index check FAILED: {err}", file=sys.stderr)
        return 1
    problems = check_report(report, pins, args.index_url)
    if problems:
        for problem in problems:
            print(f"public index check FAILED: {problem}", file=sys.stderr)
        return 1
    extra = sorted(
        canonical(i["metadata"]["name"])
        for i in report["install"]
        if canonical(i["metadata"]["name"]) not in pins
    )
    print(
        f"public index check: all {len(pins)} pins of {args.constraints.name} resolve on "
        f"{args.index_url} alone (metadata only, nothing downloaded)"
    )
    if extra:
        print(
            "  not pinned, pulled in there on this platform (PyPI's torch for Linux is the CUDA "
            f"build, which brings its CUDA libraries; the CPU build does not): {', '.join(extra)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
