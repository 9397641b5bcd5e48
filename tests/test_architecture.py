"""The layout's promises, checked: no import cycles, short functions, nothing citing files that do not ship."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SRC = REPO / "src"
MAX_FUNCTION_LINES = 80


def module_name(path: Path) -> str:
    parts = path.relative_to(SRC).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def module_level_imports(path: Path) -> set[str]:
    """voicelab modules imported when ``path`` is imported (imports inside functions run later)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("voicelab")}


def test_import_graph_has_no_cycles():
    modules = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: module_level_imports(path) & modules.keys() - {name} for name, path in modules.items()}
    state: dict[str, str] = {}

    def visit(name: str, stack: list[str]) -> None:
        state[name] = "open"
        for dep in sorted(graph[name]):
            assert state.get(dep) != "open", "import cycle: " + " -> ".join([*stack, name, dep])
            if dep not in state:
                visit(dep, [*stack, name])
        state[name] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [])


def test_every_function_in_src_is_short():
    long = []
    for path in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length >= MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert not long, long


def test_tests_never_edit_sys_path():
    offenders = [p.name for p in (REPO / "tests").glob("*.py") if "sys.path" + ".insert" in p.read_text()]
    assert not offenders


def test_shipped_text_cites_only_what_ships():
    pattern = re.compile(r"shared/(design|spec)|\bissue #?\d+")
    files = [
        *SRC.rglob("*.py"),
        *(REPO / "docs").rglob("*.md"),
        *(REPO / "benchmarks").glob("*"),
        REPO / "README.md",
    ]
    offenders = [str(p.relative_to(REPO)) for p in files if p.is_file() and pattern.search(p.read_text())]
    assert not offenders
