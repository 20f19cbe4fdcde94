"""The benchmarks run on the project's own code: nothing under ``bench/`` imports ``tests``.

(The import-linter contracts in pyproject.toml cover the packages; ``bench/`` holds scripts, not
a package, so this checks its imports with ``ast``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module))
    return found


def test_no_benchmark_imports_the_tests() -> None:
    scripts = sorted(BENCH.glob("*.py"))
    assert scripts, f"no scripts under {BENCH}"
    upward = [f"{path.relative_to(BENCH.parent)}:{line} imports {module}"
              for path in scripts
              for line, module in _imported_modules(ast.parse(path.read_text(), str(path)))
              if module == "tests" or module.startswith("tests.")]
    assert not upward, "bench/ must not import tests/ (move shared code into clipsearch/): " + \
        "; ".join(upward)
