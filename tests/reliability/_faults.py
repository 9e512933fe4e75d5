"""Helpers of the fault-injection tests: run the CLI in-process, read its one error line,
snapshot a folder to show that nothing in it changed."""

from __future__ import annotations

from pathlib import Path

from napari_instseg.cli import main

MODEL = "threeclass-tiny"


def run(capsys, *args) -> tuple[int, str, str]:
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    rc = main([str(a) for a in args])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def one_line(err: str, command: str) -> str:
    """The single error line of ``command``: nothing else but progress bars on stderr, and no
    traceback."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "%|" not in line]
    assert len(lines) == 1, err
    assert lines[0].startswith(f"napari-instseg {command}: error: "), lines[0]
    return lines[0]


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones included) with its bytes."""
    if not folder.exists():
        return {}
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }
