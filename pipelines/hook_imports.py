"""Which files of a pipeline's hooks folder a hook module's code is made of.

A view's definition hash decides whether its partitions are recomputed, so it must change
when any code the hook runs changes: not only the hook's own module, but the helper
modules of the hooks folder it imports (`from .common import X`). This follows `import`
statements statically (`ast`), transitively, within the hooks folder only: third-party and
standard-library imports are covered by the library and environment versions instead, and a
module imported some other way (`importlib`, `__import__`) is not seen, so hooks import
their helpers with import statements.
"""

from __future__ import annotations

import ast
from pathlib import Path


def local_modules(hooks_dir: Path, module: str, package_names: set[str]) -> list[Path]:
    """The files of `hooks_dir` that importing `module` (dotted, relative to the folder)
    executes: the folder's `__init__.py` files on the way, the module and every module of the
    folder it imports, transitively. `package_names` are the top-level names the folder is
    imported under (`from <name>.common import X`). Sorted, each file once; a name that
    resolves to no file of the folder is left out (the import itself will say so)."""
    seen: set[Path] = set()
    pending = [module]
    while pending:
        dotted = pending.pop()
        for path in _package_inits(hooks_dir, dotted) + _module_file(hooks_dir, dotted):
            if path in seen:
                continue
            seen.add(path)
            pending.extend(_imported(path, _module_of(hooks_dir, path), package_names))
    return sorted(seen)


def _module_file(hooks_dir: Path, dotted: str) -> list[Path]:
    base = hooks_dir.joinpath(*dotted.split(".")) if dotted else hooks_dir
    for path in (base.with_suffix(".py") if dotted else None, base / "__init__.py"):
        if path is not None and path.is_file():
            return [path]
    return []


def _package_inits(hooks_dir: Path, dotted: str) -> list[Path]:
    parts = dotted.split(".")[:-1] if dotted else []
    inits = [hooks_dir.joinpath(*parts[:i], "__init__.py") for i in range(len(parts) + 1)]
    return [p for p in inits if p.is_file()]


def _module_of(hooks_dir: Path, path: Path) -> str:
    parts = list(path.relative_to(hooks_dir).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported(path: Path, dotted: str, package_names: set[str]) -> list[str]:
    """The dotted names (relative to the hooks folder) that the module's import statements
    may load from the folder: `from .a import b` may mean module `a` or module `a.b`."""
    is_package = path.name == "__init__.py"
    package = dotted.split(".") if dotted else []
    if not is_package:
        package = package[:-1]
    names: list[str] = []
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return []  # still hashed; importing it reports the error in the task that runs it
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [local for alias in node.names
                      if (local := _local(alias.name, package_names)) is not None]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                if node.level - 1 > len(package):
                    continue
                base = package[:len(package) - (node.level - 1)]
                target = ".".join(base + (node.module.split(".") if node.module else []))
            elif node.module is None or (target := _local(node.module, package_names)) is None:
                continue
            names.append(target)
            names += [f"{target}.{a.name}" if target else a.name for a in node.names
                      if a.name != "*"]
    return names


def _local(absolute: str, package_names: set[str]) -> str | None:
    top, _, rest = absolute.partition(".")
    return rest if top in package_names else None
