"""The layer rules of DESIGN.md, checked on the source: imports point one way.

- importing ``fedlake.client`` loads neither SQLAlchemy nor the catalogue;
- every import statement in src/fedlake (module level or inside functions) obeys the
  layer table below;
- every public module that defines ``__all__`` exports only names that exist.
"""

from __future__ import annotations

import ast
import importlib
import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"
PACKAGE = SRC / "fedlake"
STDLIB = frozenset(sys.stdlib_module_names) | {"__future__"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module, e.g. fedlake.storage.base
    target: str  # the imported module, absolute, e.g. fedlake.domain.checksums
    line: int

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _source_files() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def _imports_of(path: Path) -> list[Import]:
    return _imports_in(_module_name(path), path.name == "__init__.py", path.read_text("utf-8"))


def _imports_in(module: str, is_package: bool, source: str) -> list[Import]:
    package = module if is_package else module.rpartition(".")[0]
    out: list[Import] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            out.extend(Import(module, alias.name, node.lineno) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target == "fedlake":  # ``from fedlake import settings`` names submodules
                out.extend(Import(module, f"fedlake.{a.name}", node.lineno) for a in node.names)
            else:
                out.append(Import(module, target, node.lineno))
    return out


ALL_IMPORTS = [imp for path in _source_files() for imp in _imports_of(path)]


def _layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if parts[0] == "fedlake" and len(parts) > 1 else ""


def _in_layer(layer: str) -> list[Import]:
    return [imp for imp in ALL_IMPORTS if _layer(imp.module) == layer]


def _is_fedlake(target: str) -> bool:
    return target == "fedlake" or target.startswith("fedlake.")


# --- (a) the client stays light ---------------------------------------------------------


def test_importing_the_client_loads_no_catalogue() -> None:
    code = "import json, sys\nimport fedlake.client\nprint(json.dumps(sorted(sys.modules)))\n"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=SRC.parent,
    )
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert "fedlake.client" in loaded
    heavy = [m for m in loaded if m.split(".")[0] in ("sqlalchemy", "alembic", "psycopg")]
    catalogue = [m for m in loaded if m == "fedlake.catalog" or m.startswith("fedlake.catalog.")]
    assert not heavy, f"import fedlake.client loaded {heavy[:5]}"
    assert not catalogue, f"import fedlake.client loaded {catalogue}"


# --- (b) layer rules --------------------------------------------------------------------


def test_the_import_scan_sees_the_code() -> None:
    """Guard the guard: the scan finds imports in every layer it checks."""
    for layer in ("domain", "storage", "client", "catalog", "services"):
        assert _in_layer(layer), f"no imports found in fedlake.{layer}"
    assert any(i.target == "fedlake.domain.errors" for i in _in_layer("storage"))


def test_domain_uses_only_the_standard_library() -> None:
    bad = [
        str(i)
        for i in _in_layer("domain")
        if not (i.target.split(".")[0] in STDLIB or _layer(i.target) == "domain")
    ]
    assert not bad, (
        "domain must import only the standard library and fedlake.domain:\n" + "\n".join(bad)
    )


def test_storage_depends_only_on_domain() -> None:
    bad = [
        str(i)
        for i in _in_layer("storage")
        if _is_fedlake(i.target) and _layer(i.target) not in ("domain", "storage")
    ]
    assert not bad, "storage may import only fedlake.domain and fedlake.storage:\n" + "\n".join(bad)


def test_client_depends_only_on_domain_and_storage() -> None:
    bad = [
        str(i)
        for i in _in_layer("client")
        if (_is_fedlake(i.target) and _layer(i.target) not in ("domain", "client", "storage"))
        or i.target.split(".")[0] in ("sqlalchemy", "alembic")
    ]
    assert not bad, "client may import only fedlake.domain/client/storage:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    ("layer", "forbidden"),
    [
        ("catalog", ("services", "server", "cli", "daemons", "auth", "web", "client")),
        ("services", ("server", "cli", "web")),
        ("expressions", ("services", "server", "cli", "daemons", "auth", "client")),
        ("auth", ("services", "server", "cli", "daemons", "client")),
        ("transfers", ("services", "server", "cli", "daemons", "auth", "web", "client")),
    ],
)
def test_imports_point_one_way(layer: str, forbidden: tuple[str, ...]) -> None:
    bad = [
        str(i) for i in _in_layer(layer) if _is_fedlake(i.target) and _layer(i.target) in forbidden
    ]
    assert not bad, f"fedlake.{layer} must not import {', '.join(forbidden)}:\n" + "\n".join(bad)


def test_relative_imports_are_resolved() -> None:
    assert _imports_in("fedlake.a.b", False, "from .c import x\n") == [
        Import("fedlake.a.b", "fedlake.a.c", 1)
    ]
    assert _imports_in("fedlake.a", True, "from ..domain import x\n") == [
        Import("fedlake.a", "fedlake.domain", 1)
    ]
    assert _imports_in("fedlake.a.b", False, "def f():\n    from fedlake import settings\n") == [
        Import("fedlake.a.b", "fedlake.settings", 2)
    ]
    assert _imports_in("fedlake.a.b", False, "import x.y, fedlake.z as q\n") == [
        Import("fedlake.a.b", "x.y", 1),
        Import("fedlake.a.b", "fedlake.z", 1),
    ]


# --- (c) __all__ lists only names that exist --------------------------------------------


def _public_modules() -> list[str]:
    """Modules with no ``_``-prefixed part that assign ``__all__`` at top level."""
    names = []
    for path in _source_files():
        rel = path.relative_to(PACKAGE)
        if path.name == "__main__.py":
            continue  # importing it would run the command
        if any(part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        tree = ast.parse(path.read_text("utf-8"))
        defines_all = any(
            isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign)
            and any(
                isinstance(t, ast.Name) and t.id == "__all__"
                for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
            )
            for node in tree.body
        )
        if defines_all:
            names.append(_module_name(path))
    return names


PUBLIC_MODULES = _public_modules()


def test_public_modules_found() -> None:
    assert "fedlake.domain.errors" in PUBLIC_MODULES
    assert "fedlake.storage" in PUBLIC_MODULES


@pytest.mark.parametrize("name", PUBLIC_MODULES)
def test_dunder_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    exported = module.__all__
    assert isinstance(exported, list | tuple), f"{name}.__all__ must be a list"
    assert all(isinstance(n, str) for n in exported)
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ lists names that do not exist: {missing}"
    duplicates = sorted({n for n in exported if list(exported).count(n) > 1})
    assert not duplicates, f"{name}.__all__ lists names twice: {duplicates}"
