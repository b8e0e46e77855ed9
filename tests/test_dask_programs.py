"""Programs in the style of dask's documentation, examples and tutorial,
run on trioflow with only the import changed (issue 12, "done means").

Each program in ``tests/dask_programs/`` is written for dask.distributed
(``from dask.distributed import ...``).  The test replaces that import by
``from trioflow import ...``, nothing else, runs the program as a user
would (``python program.py``, so worker processes, ``__main__`` functions
and all), and compares the ``RESULT`` line it prints with the answer
computed here in plain Python, numpy or pandas.

``python tests/test_dask_programs.py PYTHON`` runs the unchanged programs
with an interpreter that has dask.distributed installed and compares them
with the same answers (how the programs were checked to be real dask
programs; see ``check_on_dask``).
"""

import ast
import os
import pathlib
import re
import signal
import subprocess
import sys
from collections import Counter

import pytest

PROGRAMS = pathlib.Path(__file__).resolve().parent / "dask_programs"
TIMEOUT = 50


def _word_count():
    spec = {}
    exec(re.search(r"TEXTS = \[.*?\] \* 10", (PROGRAMS / "word_count.py").read_text(),
                   re.S).group(0), spec)
    total = Counter()
    for text in spec["TEXTS"]:
        total.update(text.split())
    return [list(kv) for kv in sorted(total.items(), key=lambda kv: (-kv[1], kv[0]))[:5]]


def _fib(n):
    return n if n < 2 else _fib(n - 1) + _fib(n - 2)


def _collections():
    import numpy as np
    import pandas as pd
    x = np.arange(10_000, dtype="f8").reshape(100, 100)
    df = pd.DataFrame({"b": [-1, -2, -3, -4, -5, 6], "c": list("abcabc")})
    negative = df[df.b < 0]
    words = Counter(w for text in ["a b", "b c", "c a b"] for w in text.split())
    return [float((x + x.T).sum()),
            [int(negative.b.sum()), len(negative), int(df.b.sum()),
             {k: int(v) for k, v in df.groupby("c").b.sum().items()}],
            sorted(words.items()), sum(i + 1 for i in range(10)), float(negative.b.sum())]


def _as_completed_growing():
    seen, pending = [], [i + 1 for i in range(5)]
    while pending:
        y = pending.pop()
        seen.append(y)
        if y < 10:
            pending.append(y + 6)
    return [sorted(seen), 6]


#: program -> the answer, computed without any cluster
EXPECTED = {
    "futures_quickstart": lambda: [32, sum(range(1, 101)), sum(range(1, 101)),
                                   sum(range(1000)), True, "finished"],
    "word_count": _word_count,
    "task_launching": lambda: [_fib(9), sum(range(30)), sum(range(1, 11))],
    "actors": lambda: [1, 11, 21, 12, True],
    "queues": lambda: [sorted(sum(range(i)) for i in range(10)), 2, [1, 2]],
    "variables": lambda: ["stopped", 1],
    "semaphores": lambda: [list(range(8)), 20],
    "asyncio_client": lambda: [11, 55, 55, "slept", sum(i * k for i in range(4) for k in range(3)),
                                "open", True],
    "tornado_client": lambda: [11, 20],
    "collections_on_client": _collections,
    "resilience": lambda: [sum(x * x for x in range(40)), True],
    "as_completed_growing": _as_completed_growing,
    "cluster_scaling": lambda: [[2, 2], sum(range(1, 13)), sum(range(1, 11)), True, True],
    "locality_and_resources": lambda: [42, 42, True, 2, 3, [2, 2]],
}

NEEDS = {"tornado_client": "tornado"}


def _with_trioflow(source: str) -> str:
    """The program with its import of dask.distributed changed, nothing else."""
    changed = re.sub(r"^from (dask\.)?distributed import", "from trioflow import", source,
                     flags=re.M)
    assert changed != source, "the program does not import dask.distributed"
    return changed


def _run(python, path: pathlib.Path, cwd) -> list:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    proc = subprocess.Popen([python, str(path)], cwd=cwd, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"{path.name} did not finish in {TIMEOUT} s:\n{out}\n{err[-3000:]}")
    finally:
        try:  # anything the program left behind (it should leave nothing)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert proc.returncode == 0, f"{path.name} failed:\n{out}\n{err[-3000:]}"
    lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
    assert lines, f"{path.name} printed no RESULT line:\n{out}\n{err[-3000:]}"
    return ast.literal_eval(lines[-1][len("RESULT "):])


def _skip_without(name):
    module = NEEDS.get(name)
    if module is not None:
        pytest.importorskip(module)


@pytest.mark.timeout(TIMEOUT + 10)
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_a_dask_program_runs_on_trioflow_with_only_the_import_changed(name, tmp_path):
    _skip_without(name)
    program = tmp_path / f"{name}.py"
    program.write_text(_with_trioflow((PROGRAMS / f"{name}.py").read_text()))
    assert _run(sys.executable, program, tmp_path) == EXPECTED[name]()


def test_every_program_has_an_answer():
    assert {p.stem for p in PROGRAMS.glob("*.py")} == set(EXPECTED)


def check_on_dask(python: str) -> int:
    """Run every unchanged program with ``python`` (one that has
    dask.distributed) and compare it with the same answers: how the programs
    were checked to be real dask programs.  Not a test of the suite, which
    must not need a second installation: run it by hand,
    ``python tests/test_dask_programs.py /path/to/dask-venv/bin/python``."""
    import tempfile
    failed = 0
    for name in sorted(EXPECTED):
        with tempfile.TemporaryDirectory() as tmp:
            program = pathlib.Path(tmp) / f"{name}.py"
            program.write_text((PROGRAMS / f"{name}.py").read_text())
            try:
                got = _run(python, program, pathlib.Path(tmp))
            except BaseException as exc:  # noqa: B036 - pytest.fail's Failed too
                print(f"{name}: FAILED on dask: {exc}")
                failed += 1
                continue
        same = got == EXPECTED[name]()
        failed += not same
        print(f"{name}: {'same answer' if same else f'DIFFERENT: {got!r}'}")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python tests/test_dask_programs.py PYTHON_WITH_DASK_DISTRIBUTED")
    sys.exit(check_on_dask(sys.argv[1]))
