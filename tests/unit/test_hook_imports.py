"""`pipelines/hook_imports.py`: the hooks-folder files a hook module's code is made of.

What is shown: every form of import statement that reaches a module of the folder is
followed, transitively and through cycles, with the `__init__.py` files on the way;
third-party imports, unrelated modules of the folder, names that are attributes rather than
modules, and an unparsable helper (still hashed, not followed) do not add files; and
`LoadedSpec.hook_files` sees a helper imported under the folder's own name.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from pipelines.hook_imports import local_modules
from pipelines.spec import LoadedSpec

NAMES = {"pitstop_hooks_demo", "demo"}


def _folder(root: Path, files: dict[str, str]) -> Path:
    folder = root / "demo"
    for name, text in {"__init__.py": "", **files}.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text))
    return folder


def _found(folder: Path, module: str) -> list[str]:
    return [p.relative_to(folder).as_posix() for p in local_modules(folder, module, NAMES)]


@pytest.mark.parametrize("statement", [
    "from .common import RATE",
    "from . import common",
    "from .common import *",
    "import demo.common",
    "from demo.common import RATE",
    "from pitstop_hooks_demo import common",
    "import pitstop_hooks_demo.common as c",
    "def f():\n    from .common import RATE\n    return RATE",
])
def test_each_import_form_reaches_the_helper(tmp_path: Path, statement: str) -> None:
    folder = _folder(tmp_path, {"hook.py": statement + "\n", "common.py": "RATE = 1\n",
                                "other.py": "X = 2\n"})
    assert _found(folder, "hook") == ["__init__.py", "common.py", "hook.py"]


def test_helpers_are_followed_transitively_through_cycles_and_subpackages(
        tmp_path: Path) -> None:
    folder = _folder(tmp_path, {
        "hook.py": "import pandas as pd\nfrom .lib.maths import scale\n",
        "lib/__init__.py": "",
        "lib/maths.py": "from ..common import RATE\nfrom . import units\n",
        "lib/units.py": "from .maths import scale\n",   # a cycle back to maths
        "common.py": "import numpy\n",
        "unused.py": "",
    })
    assert _found(folder, "hook") == ["__init__.py", "common.py", "hook.py",
                                      "lib/__init__.py", "lib/maths.py", "lib/units.py"]


def test_a_module_in_a_subpackage_includes_the_inits_on_its_way(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"views/__init__.py": "", "views/recent.py": "X = 1\n"})
    assert _found(folder, "views.recent") == ["__init__.py", "views/__init__.py",
                                              "views/recent.py"]


def test_attributes_missing_modules_and_escaping_imports_add_no_files(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {
        "hook.py": "from .common import RATE, missing\nfrom .nowhere import x\n"
                   "from .... import too_far\nimport os.path\nimport democracy\n",
        "common.py": "RATE = 1\n",
    })
    assert _found(folder, "hook") == ["__init__.py", "common.py", "hook.py"]


def test_an_unparsable_helper_is_hashed_but_not_followed(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"hook.py": "from .broken import x\n",
                                "broken.py": "from .common import (\n",
                                "common.py": ""})
    assert _found(folder, "hook") == ["__init__.py", "broken.py", "hook.py"]


def test_the_package_init_imports_count_for_every_hook(tmp_path: Path) -> None:
    folder = _folder(tmp_path, {"__init__.py": "from . import setup\n", "setup.py": "",
                                "hook.py": ""})
    assert _found(folder, "hook") == ["__init__.py", "hook.py", "setup.py"]


def test_the_loaded_spec_names_its_hook_files(tiny: LoadedSpec) -> None:
    folder = tiny.hooks_dir
    (folder / "helpers.py").write_text("K = 3\n")
    hooks = folder / "hooks.py"
    hooks.write_text(f"from {folder.name}.helpers import K\n" + hooks.read_text())
    assert [p.name for p in tiny.hook_files("hooks:last_value")] == [
        "__init__.py", "helpers.py", "hooks.py"]
