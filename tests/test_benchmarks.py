"""The benchmark scripts stay runnable: no test runs them (they take minutes to hours), so a rename in the code
they import would go unnoticed until someone measures (`robotics_fidelity.py` imported a `pretrain` that had
been renamed, and failed at import for several stops)."""

import ast
import json
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if "def main(" in p.read_text())

# Imports every script in one fresh interpreter (benchmarks may set threads or backends when imported) and
# reports, per script, the import error or whether it has a callable `main`.
_IMPORT_ALL = """
import importlib, json, sys
sys.path.insert(0, sys.argv[1])
out = {}
for name in sys.argv[2:]:
    try:
        out[name] = callable(getattr(importlib.import_module(name), "main", None))
    except Exception as e:
        out[name] = f"{type(e).__name__}: {e}"
print(json.dumps(out))
"""


def test_every_benchmark_script_imports_and_has_a_main():
    assert len(SCRIPTS) >= 20  # the glob found the folder
    names = [p.stem for p in SCRIPTS]
    done = subprocess.run(
        [sys.executable, "-c", _IMPORT_ALL, str(BENCHMARKS), *names],
        capture_output=True, text=True, timeout=300, check=True,
    )  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert sorted(result) == names
    assert {name: r for name, r in result.items() if r is not True} == {}  # the failures, by script


def test_every_benchmark_docstring_names_the_command_that_runs_it():
    """The brief: each figure in a note comes with the command that printed it, and the script says how."""
    for script in SCRIPTS:
        doc = ast.get_docstring(ast.parse(script.read_text())) or ""
        assert f"benchmarks/{script.name}" in doc or f"python {script.name}" in doc, script.name
