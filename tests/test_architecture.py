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


# --- docs/architecture.md says what the code is ---------------------------------------------------------
ARCHITECTURE = REPO / "docs" / "architecture.md"
PACKAGE = SRC / "voicelab"
SHELLS = ("voicelab.cli", "voicelab.server", "voicelab.testing")
"""Packages that may import the core; the core imports none of them."""
FILE_SUFFIXES = {"json", "jsonl", "csv", "md", "png", "wav", "py", "lock", "safetensors", "bin", "txt"}
"""A dotted name ending in one of these is a file (``voice.json``), not ``module.attribute``."""
_CODE = re.compile(r"`([^`\n]+)`")
REPO_FOLDERS = ("src/", "tests/", "scripts/", "benchmarks/", "docs/")


def _table_rows(header: str) -> list[list[str]]:
    """The cells of each row of the document's table whose first header cell is ``header``."""
    lines = ARCHITECTURE.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {header} |"))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def _module_map() -> dict[str, str]:
    """Each module the map names (``server/guard.py``, relative to ``src/voicelab/``) -> its row's first cell;
    a package row (``server/``) names its modules relative to the package."""
    named = {}
    for first, job in _table_rows("module"):
        for token in _CODE.findall(first):
            named[token] = first
            if token.endswith("/"):
                named |= {token + m: first for m in _CODE.findall(job) if m.endswith(".py") and "/" not in m}
    return named


def _top_level_names(tree: ast.Module) -> dict[str, ast.AST]:
    """Names a module defines at its top level (functions, classes, assignments, imports) -> their node."""
    names: dict[str, ast.AST] = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names[node.name] = node
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id: node for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.ImportFrom | ast.Import):
            names |= {(a.asname or a.name).split(".")[0]: node for a in node.names}
    return names


def _module_file(parts: list[str]) -> Path | None:
    base = PACKAGE.joinpath(*parts)
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _resolves(dotted: str) -> bool:
    """Whether ``voicelab.a.b.Name.attr`` names a module, then a top-level name, then a class member."""
    parts = dotted.split(".")[1:]
    for cut in range(len(parts), 0, -1):
        if (path := _module_file(parts[:cut])) is None:
            continue
        rest, node = parts[cut:], ast.parse(path.read_text())
        for name in rest:
            scope = _top_level_names(node) if isinstance(node, ast.Module | ast.ClassDef) else {}
            if isinstance(node, ast.ClassDef):
                scope |= _top_level_names(ast.Module(body=node.body, type_ignores=[]))
                scope |= {n.target.id: n for n in node.body if isinstance(n, ast.AnnAssign)}
            if name not in scope:
                return False
            node = scope[name]
        return True
    return False


def _dotted_names(text: str) -> set[str]:
    """``voicelab.x.Y`` names, and ``x.Y`` where ``x`` is a module of ``voicelab`` (``dataset.FILE_NAMES``),
    spelt in backticks; file names (``voice.json``) left out."""
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    found = set()
    for token in _CODE.findall(text):
        if (
            not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)+", token)
            or token.rsplit(".", 1)[1] in FILE_SUFFIXES
        ):
            continue
        if token.startswith("voicelab."):
            found.add(token)
        elif token.split(".")[0] in top:
            found.add(f"voicelab.{token}")
    return found


def _source_paths(text: str) -> set[str]:
    """Source paths spelt in backticks: ``*.py`` (relative to the repository, ``src/`` or ``src/voicelab/``), and
    anything under the repository's own folders (``tests/``, ``benchmarks/``...); data folders left out."""
    found = set()
    for token in _CODE.findall(text):
        path = token.split(" ")[0].replace("<step>", "prepare_audio")
        if re.fullmatch(r"[\w./-]+\.py", path) or path.startswith(REPO_FOLDERS):
            found.add(path)
    return found


def test_every_module_and_path_the_architecture_page_names_exists():
    text = ARCHITECTURE.read_text()
    missing = sorted(name for name in _dotted_names(text) if not _resolves(name))
    named = _module_map()
    missing += [f"module map: {m}" for m in named if not (PACKAGE / m).exists()]
    for path in _source_paths(text) - named.keys():
        in_a_package = any(m.endswith("/" + path) for m in named)
        if not in_a_package and not any(any(root.glob(path)) for root in (REPO, SRC, PACKAGE)):
            missing.append(f"path: {path}")
    links = re.findall(r"\]\(([^)#:]+)\)", text)  # relative links, to other pages of docs/
    missing += [f"link: {link}" for link in links if not (ARCHITECTURE.parent / link).exists()]
    assert not missing, missing


def test_the_module_map_has_a_line_for_every_module():
    """A module added to ``src/voicelab/`` gets its line in docs/architecture.md's module map."""
    named = _module_map()
    modules = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    assert sorted(modules - named.keys()) == []


def _owner_names(owner) -> set[str]:
    return {*owner.FILE_NAMES, *getattr(owner, "DIR_NAMES", ())}


def _covers(token: str, name: str, dirs: set[str]) -> bool:
    """Whether the table's ``token`` (``.staging-NAME-PID/``, ``{key}.wav``) is the owner's ``name``: the
    same, a name made with a prefix (``compare-``) or suffix (``_review.csv``), or a folder's ``eval-...``."""
    token = token.rstrip("/*")
    if token == name or (name.endswith("-") and token.startswith(name)):
        return True
    if name.startswith(("_", ".")) and token.endswith(name) and token != name.lstrip("."):
        return True
    return name in dirs and token.startswith(f"{name}-")


def test_the_folder_tables_list_exactly_the_names_their_owner_defines():
    """docs/architecture.md's table of each data folder names every file its owner defines
    (``dataset.FILE_NAMES``, ``voice.FILE_NAMES`` and ``voice.DIR_NAMES``) and nothing the owner does not."""
    from voicelab import dataset, voice

    problems = []
    for header, names, dirs in (
        ("file in prepared/NAME/", _owner_names(dataset) | {dataset.CLIP_SUFFIX}, set()),
        ("file in voices/NAME/", _owner_names(voice), set(voice.DIR_NAMES)),
    ):
        listed = [t for row in _table_rows(header) for t in _CODE.findall(row[0])]
        problems += [
            f"{header}: {t} is no name of the owner"
            for t in listed
            if not any(_covers(t, n, dirs) for n in names)
        ]
        problems += [f"{header}: {n} missing" for n in names if not any(_covers(t, n, dirs) for t in listed)]
    assert not problems, problems


def test_the_library_core_imports_no_shell():
    """cli/, server/ and testing/ call the core; nothing of the core imports them, even inside a function."""
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        name = module_name(path)
        if not name.startswith(SHELLS):
            offenders += [f"{name} imports {dep}" for dep in all_imports(path) if dep.startswith(SHELLS)]
    assert not offenders, offenders
