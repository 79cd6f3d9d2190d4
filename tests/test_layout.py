"""The layout of ../shared/design.md, checked by reading the source (nothing is imported).

- no import cycles among the project's modules, counting every import statement (inside
  functions and under ``TYPE_CHECKING`` too) and the package ``__init__`` each import runs;
- no module imports another module's ``_private`` name, nor reaches one as an attribute;
- a module at the top of ``scoregen_keras/`` is the twin of a ``reference/`` module, or
  ``choices`` (keras-free), or the package's ``__init__``;
- ``choices`` imports nothing, so `cli` can read it before choosing a backend;
- framework imports (tensorflow, jax, torch) only under ``scoregen_keras/backend/``, and
  ``reference/`` imports only NumPy, SciPy and the standard library.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("reference", "scoregen_keras", "cli")
FRAMEWORKS = ("tensorflow", "jax", "torch")
REFERENCE_MAY_IMPORT = ("numpy", "scipy")
NOT_TWINS = ("__init__", "choices")


def _module_name(path: Path) -> str:
    """Dotted name of a source file under ROOT (a package's __init__ is the package)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sources() -> dict[str, Path]:
    """Every project module by dotted name."""
    return {
        _module_name(path): path for package in PACKAGES for path in (ROOT / package).rglob("*.py")
    }


SOURCES = _sources()


def _imports(path: Path) -> Iterator[tuple[ast.AST, str, list[str]]]:
    """(node, module, names) of every import statement in a file, wherever it stands."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node, alias.name, []
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node, node.module, [alias.name for alias in node.names]


def _is_package(name: str) -> bool:
    """Whether a project module is a package (a folder with __init__.py)."""
    return SOURCES[name].name == "__init__.py"


def _targets(importer: str, module: str, names: list[str]) -> set[str]:
    """Project modules an import statement executes: the modules it names and, outside the
    importer's own packages, every package __init__ above them."""
    named = {f"{module}.{n}" for n in names if f"{module}.{n}" in SOURCES}
    if module in SOURCES and (not names or len(named) < len(names)):
        named.add(module)
    targets = set()
    for target in named:
        targets.add(target)
        parts = target.split(".")
        for depth in range(1, len(parts)):
            package = ".".join(parts[:depth])
            if package in SOURCES and not importer.startswith(package + "."):
                targets.add(package)
    targets.discard(importer)
    return targets


def _graph() -> dict[str, set[str]]:
    """module -> project modules its import statements execute."""
    return {
        name: set().union(*(_targets(name, m, n) for _, m, n in _imports(path)))
        for name, path in SOURCES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in on_stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(max(limit, 10 * len(graph)))
    try:
        for node in sorted(graph):
            if node not in index:
                visit(node)
    finally:
        sys.setrecursionlimit(limit)
    return components


def test_no_import_cycles() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c"]]


def _private(name: str) -> bool:
    """A _private name (dunders such as __version__ are public)."""
    return name.startswith("_") and not name.startswith("__")


def _private_uses(name: str, path: Path) -> list[str]:
    """`from other import _x` and `other_module._x` in a project file."""
    found, module_aliases = [], {}
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node, module, _ in _imports(path):
        if module == name or module.split(".")[0] not in PACKAGES:
            continue
        if isinstance(node, ast.Import):
            for alias in node.names:
                module_aliases[alias.asname or alias.name.split(".")[0]] = alias.name
        for alias in getattr(node, "names", []):
            if isinstance(node, ast.ImportFrom) and _private(alias.name):
                found.append(f"{name} imports {module}.{alias.name}")
            if isinstance(node, ast.ImportFrom) and f"{module}.{alias.name}" in SOURCES:
                module_aliases[alias.asname or alias.name] = f"{module}.{alias.name}"
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and _private(node.attr)
            and isinstance(node.value, ast.Name)
            and node.value.id in module_aliases
        ):
            found.append(f"{name} uses {module_aliases[node.value.id]}.{node.attr}")
    return found


def test_no_module_imports_another_modules_private_names() -> None:
    found = [use for name, path in SOURCES.items() for use in _private_uses(name, path)]
    assert found == []


def test_the_private_check_finds_private_imports(tmp_path: Path) -> None:
    source = tmp_path / "user.py"
    source.write_text(
        "from scoregen_keras.runs.folder import _hidden\n"
        "from scoregen_keras.runs import folder\n"
        "folder._also_hidden()\n"
    )
    assert _private_uses("user", source) == [
        "user imports scoregen_keras.runs.folder._hidden",
        "user uses scoregen_keras.runs.folder._also_hidden",
    ]


def test_top_level_modules_are_twins_choices_or_init() -> None:
    top = sorted(path.stem for path in (ROOT / "scoregen_keras").glob("*.py"))
    strays = [name for name in top if name not in NOT_TWINS and f"reference.{name}" not in SOURCES]
    assert strays == []


def test_choices_imports_nothing() -> None:
    assert list(_imports(SOURCES["scoregen_keras.choices"])) == []


def test_framework_imports_only_in_the_backend() -> None:
    found = {
        f"{name}: {module}"
        for name, path in SOURCES.items()
        if not name.startswith("scoregen_keras.backend")
        for _, module, _ in _imports(path)
        if module.split(".")[0] in FRAMEWORKS
    }
    assert found == set()


def test_reference_imports_only_numpy_scipy_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | set(REFERENCE_MAY_IMPORT) | {"reference", "__future__"}
    found = {
        f"{name}: {module}"
        for name, path in SOURCES.items()
        if name.split(".")[0] == "reference"
        for _, module, _ in _imports(path)
        if module.split(".")[0] not in allowed
    }
    assert found == set()
