"""Refuse to start local dask worker processes that would run the user's script again.

A local cluster's workers are started with multiprocessing's *spawn* method, which imports
the parent's main script again in each new process (as ``__mp_main__``). A script whose
code runs at import, not under ``if __name__ == "__main__":``, then runs again in every
worker: a script that opens napari opens it once more per worker, or the workers never
report back and dask says "Nanny failed to start". The engine checks the script before it
starts a local cluster and says, in one line, which line of it runs at import and what to
do. The check reads the script's source; it imports and runs nothing.

Why refuse rather than fall back to threads: a threaded cluster runs the assembly back-ends
in one process under the GIL and beside the napari GUI, slower and not what was asked for;
the fix is one line in the script, and a remote scheduler needs none.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

from ..arrays import InputError


def _is_main_test(test: ast.expr) -> bool:
    """``__name__ == "__main__"``, either way round."""
    if not isinstance(test, ast.Compare) or len(test.ops) != 1:
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    values = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(values) == 1


def _runs_code(node: ast.stmt) -> bool:
    """Whether a top-level statement is a call or a block that calls something: what a script
    *does* (``napari.run()``, ``viewer.open(...)``, ``print(run(...))``, a loop).

    Assignments are left out, so that a guarded script's ``HERE = Path(__file__).parent`` is
    not refused; imports, definitions and the ``__main__`` test run nothing of the script's.
    """
    if isinstance(node, ast.If) and _is_main_test(node.test):
        return False
    if isinstance(node, ast.Expr | ast.For | ast.AsyncFor | ast.While | ast.With):
        return any(isinstance(n, ast.Call | ast.Await) for n in ast.walk(node))
    if isinstance(node, ast.AsyncWith | ast.Try | ast.TryStar | ast.If | ast.Match):
        return any(isinstance(n, ast.Call | ast.Await) for n in ast.walk(node))
    return False


def spawned_main_file(main=None) -> Path | None:
    """The file that spawned processes import again as ``__mp_main__``, or None (an
    interactive session, ``python -c``, or ``python -m package``), as multiprocessing
    decides it."""
    main = main if main is not None else sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    name = getattr(spec, "name", None)
    if name is not None:
        if name == "__main__" or name.endswith(".__main__"):
            return None  # multiprocessing does not import a package's __main__ again
        origin = getattr(spec, "origin", None)
        return Path(origin) if origin else None
    path = getattr(main, "__file__", None)
    if not path or Path(path).stem == "ipython":
        return None
    return Path(path)


def unguarded_line(path: Path) -> int | None:
    """The first line of ``path`` that runs code at import outside the ``__main__`` test (see
    :func:`_runs_code`), or None (also for a file that is not readable Python source)."""
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except (OSError, SyntaxError, ValueError):
        return None
    for node in tree.body:
        if _runs_code(node):
            return node.lineno
    return None


def refuse_unguarded_main(main=None) -> None:
    """Raise :class:`InputError` when local worker processes would run the main script's
    code again (see the module doc); nothing for a guarded script or no script."""
    path = spawned_main_file(main)
    line = unguarded_line(path) if path is not None and path.is_file() else None
    if line is None:
        return
    raise InputError(
        f'{path} runs code at line {line} outside `if __name__ == "__main__":`; the local '
        "dask workers import the script again and would run it too (another napari, or "
        "'Nanny failed to start'): put the script's code under that guard, or give a "
        "scheduler address"
    )
