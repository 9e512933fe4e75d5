"""A script that runs code outside ``if __name__ == "__main__":`` is refused before local dask
worker processes would import it again (and run it: another napari, or "Nanny failed to
start"); guarded scripts, packages' ``__main__`` and interactive sessions pass."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from types import SimpleNamespace

import pytest

from napari_instseg.core.arrays import InputError
from napari_instseg.core.large.main_guard import refuse_unguarded_main, spawned_main_file

UNGUARDED_NAPARI = """
    import napari

    viewer = napari.Viewer()
    viewer.open("big.tif")
    napari.run()
"""
GUARDED = '''
    """A guarded script: constants and definitions at the top, the work under the test."""
    from pathlib import Path

    HERE = Path(__file__).parent

    def main():
        print(HERE)

    if "__main__" == __name__:
        main()
'''


def script(tmp_path, text: str):
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(text))
    return path


@pytest.mark.parametrize(
    "text, line",
    [
        (UNGUARDED_NAPARI, 5),  # viewer.open(...): the first call that is not an assignment
        ("from x import run, segment_large\nprint(run(segment_large('a', 'b', 'm')))\n", 2),
        ("import time\nfor i in range(3):\n    time.sleep(i)\n", 2),
        ("import sys\nif sys.argv:\n    print(sys.argv)\n", 2),
    ],
)
def test_a_script_that_runs_at_import_is_refused_with_its_line(tmp_path, text, line):
    path = script(tmp_path, text)
    main = SimpleNamespace(__spec__=None, __file__=str(path))
    with pytest.raises(InputError) as err:
        refuse_unguarded_main(main)
    text = str(err.value)
    assert f"{path} runs code at line {line}" in text
    assert 'if __name__ == "__main__":' in text and "scheduler address" in text


def test_a_guarded_script_passes(tmp_path):
    main = SimpleNamespace(__spec__=None, __file__=str(script(tmp_path, GUARDED)))
    refuse_unguarded_main(main)


def test_mains_that_are_not_imported_again_pass(tmp_path):
    unguarded = str(script(tmp_path, UNGUARDED_NAPARI))
    interactive = SimpleNamespace(__spec__=None)  # python -c, a REPL, Jupyter
    package = SimpleNamespace(__spec__=SimpleNamespace(name="napari.__main__", origin=unguarded))
    for main in (interactive, package):
        assert spawned_main_file(main) is None
        refuse_unguarded_main(main)
    module = SimpleNamespace(__spec__=SimpleNamespace(name="tools.job", origin=unguarded))
    with pytest.raises(InputError):  # python -m tools.job is imported again by name
        refuse_unguarded_main(module)


@pytest.mark.slow
def test_the_local_cluster_refuses_an_unguarded_script_before_any_worker(tmp_path):
    path = script(
        tmp_path,
        """
        from napari_instseg.core.large.engine import DaskClient

        DaskClient(n_workers=1).close()
        """,
    )
    done = subprocess.run(
        [sys.executable, str(path)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode != 0
    assert "InputError" in done.stderr and "runs code at line 4" in done.stderr, done.stderr
    assert done.stderr.count("Traceback") == 1  # the parent's refusal only: no worker ran
