"""The layout's promises, checked: no import cycles, short functions, nothing citing files that do not ship."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import REPO

SRC = REPO / "src"
MAX_FUNCTION_LINES = 60
"""Longest function in src/, from its ``def`` line to its last line."""
LONG_BECAUSE = "Longer than 60 lines because"
"""A function's docstring that starts a sentence with this says why it is longer, and may be."""


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
                explained = LONG_BECAUSE in (ast.get_docstring(node) or "")
                if length > MAX_FUNCTION_LINES and not explained:
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


# --- every data folder has one owner ------------------------------------------------------------------
OWNERS = {"voicelab.dataset": "prepared/NAME/", "voicelab.voice": "voices/NAME/"}
DATASET_WRITERS = {"write_transcript", "write_exclusions", "write_manifest", "write_sources_left_out"}
"""dataset's module-level writers (kept for tests and arbitrary files): src goes through PreparedDataset."""


def _folder_names() -> tuple[set[str], set[str]]:
    """(file names and name parts the owners give, folder names that are common words)."""
    from voicelab import dataset, voice

    return {*dataset.FILE_NAMES, *voice.FILE_NAMES}, set(voice.DIR_NAMES)


def _strings(tree: ast.AST) -> list[tuple[ast.Constant, bool]]:
    """Every string literal of ``tree`` but docstrings (a string alone as a statement), f-string parts
    included, each with whether it is a key (of a dict display or a subscript: JSON fields, not paths)."""
    prose = {id(node.value) for node in ast.walk(tree) if isinstance(node, ast.Expr)}
    keys = {
        id(k) for node in ast.walk(tree) if isinstance(node, ast.Dict) for k in node.keys if k is not None
    }
    keys |= {id(node.slice) for node in ast.walk(tree) if isinstance(node, ast.Subscript)}
    return [
        (node, id(node) in keys)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in prose
    ]


def _spelled(text: str, is_key: bool, names: set[str], dirs: set[str]) -> list[str]:
    """The owners' names ``text`` spells: a file name anywhere in it; a folder name that is a common word
    (``eval``) as the whole string or its first path part, unless the string is a key."""
    found = [name for name in names if name in text]
    if not is_key:
        found += [d for d in dirs if text == d or text.startswith((f"{d}/", f"{d}-"))]
    return found


def test_only_the_folder_owners_spell_the_folders_file_names():
    """No module but ``dataset`` (prepared/) and ``voice`` (voices/) spells a name of a file or folder in
    them, in code or in a message: the others ask the owner (``ds.transcript_path``, ``voice.eval_dir``)."""
    names, dirs = _folder_names()
    offenders = []
    for path in SRC.rglob("*.py"):
        if module_name(path) in OWNERS:
            continue
        for node, is_key in _strings(ast.parse(path.read_text())):
            for name in _spelled(node.value, is_key, names, dirs):
                offenders.append(f"{path.relative_to(REPO)}:{node.lineno} spells {name!r}")
    assert not offenders, "\n".join(offenders)


def test_the_owner_check_sees_a_file_name_in_code_and_in_a_message():
    names, dirs = _folder_names()
    code = (
        'x = folder / "transcript.csv"\ny = f"no {n} in {m} of voice.json"\nEVAL = "eval"\n'
        'z = {"samples": report["samples"]}\n"""docstrings may say transcript.csv and eval/"""'
    )
    found = [n for node, key in _strings(ast.parse(code)) for n in _spelled(node.value, key, names, dirs)]
    assert sorted(found) == ["eval", "transcript.csv", "voice.json"]


def test_writes_to_a_prepared_folder_go_through_prepared_dataset():
    """Other modules write prepared/ files through ``PreparedDataset`` methods, never the module-level
    writers, so the dataset object is the one place to change how a file is written."""
    offenders = []
    for path in SRC.rglob("*.py"):
        if module_name(path) == "voicelab.dataset":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "voicelab.dataset":
                offenders += [
                    f"{path.name}: imports {a.name}" for a in node.names if a.name in DATASET_WRITERS
                ]
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "dataset"
                and node.attr in DATASET_WRITERS
            ):
                offenders.append(f"{path.name}:{node.lineno} calls dataset.{node.attr}")
    assert not offenders, offenders


def all_imports(path: Path) -> set[str]:
    """voicelab modules ``path`` imports anywhere (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return {name for name in found if name.startswith("voicelab")}


def test_the_server_imports_no_evaluate_or_transcribe_module():
    """The server runs no evaluation and no transcription: nothing it imports, however deep and even
    inside a function, is a module of ``voicelab.evaluate`` or ``voicelab.transcribe``."""
    modules = {module_name(p): p for p in SRC.rglob("*.py")}

    def package_parents(name: str) -> set[str]:
        parts = name.split(".")
        return {".".join(parts[:i]) for i in range(2, len(parts))} & modules.keys()

    todo = [name for name in modules if name.startswith("voicelab.server")]
    seen: dict[str, str] = {name: name for name in todo}
    while todo:
        name = todo.pop()
        for dep in (all_imports(modules[name]) & modules.keys()) | package_parents(name):
            if dep not in seen:
                seen[dep] = name
                todo.append(dep)
    forbidden = sorted(n for n in seen if n.startswith(("voicelab.evaluate", "voicelab.transcribe")))
    assert not forbidden, [f"{n} (imported by {seen[n]})" for n in forbidden]
