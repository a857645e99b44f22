"""The engine stays apart from the dataset layer: ``import sam`` and every engine module load
without SQLite, Gradio or :mod:`sam.dataset`, and no engine file imports the dataset package
(the dataset layer may import the engine, never the other way round)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

SAM = Path(__file__).resolve().parents[3] / "sam"
# The dataset layer itself, the one-line entry point of ``python -m sam.export``, and the
# command lines of evaluation and fine-tuning (they read ``--db`` project databases).
DATASET_SIDE = {
    SAM / "dataset",
    SAM / "export.py",
    SAM / "autolabel.py",
    SAM / "evaluate.py",
    SAM / "finetune" / "__main__.py",
}


def engine_files() -> list[Path]:
    return sorted(
        path
        for path in SAM.rglob("*.py")
        if not any(path == side or side in path.parents for side in DATASET_SIDE)
    )


def module_name(path: Path) -> str:
    parts = path.relative_to(SAM.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every module an ``import``/``from ... import`` of ``path`` names, relative ones resolved
    (``from . import dataset`` counts as ``sam.dataset``)."""
    package = (
        module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    )
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def test_no_engine_file_imports_the_dataset_layer():
    offenders = {
        str(path.relative_to(SAM.parent)): sorted(
            m for m in imported_modules(path) if m == "sam.dataset" or m.startswith("sam.dataset.")
        )
        for path in engine_files()
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_the_engine_loads_without_sqlite_gradio_or_the_dataset_layer():
    modules = [module_name(path) for path in engine_files() if path.name != "__main__.py"]
    code = (
        "import importlib, sys\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in ('sqlite3', 'gradio', 'sam.dataset') if m in sys.modules)\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=SAM.parent, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
