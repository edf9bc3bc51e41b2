"""The library never imports the training recipes (``regionlab.training``): issue 27 item 6.

The training scripts import the world (``regionlab.shapes``) and the library; nothing else in
``regionlab`` may import them, at module level or inside a function.
"""

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "regionlab"

# Import the library surface and every other module of the package except the training
# package, load the CLI's subcommands, then list what of regionlab.training got imported.
# Modules are listed from the files (tasks/ and explain/ are namespace packages, which
# pkgutil does not walk).
PROBE = r"""
import importlib, json, sys
from pathlib import Path

import regionlab
import regionlab.cli
import regionlab.models
import regionlab.ui

root = Path(regionlab.__file__).parent
names = sorted(
    ".".join(("regionlab", *p.relative_to(root).with_suffix("").parts)).removesuffix(".__init__")
    for p in root.rglob("*.py") if "training" not in p.relative_to(root).parts)
for name in names:
    importlib.import_module(name)
regionlab.cli.build_parser()  # the subcommands, as `regionlab --help` loads them
leaked = sorted(m for m in sys.modules if (m + ".").startswith("regionlab.training."))
import regionlab.training.recipe  # the check sees the package when it is imported
control = "regionlab.training" in sys.modules and "regionlab.training.tolerance" in sys.modules
print(json.dumps({"imported": names, "leaked": leaked, "control": control}))
"""


def test_importing_the_library_leaves_training_out_of_sys_modules():
    res = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True,
                         text=True, timeout=300,
                         env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    imported = set(out["imported"])
    for surface in ("regionlab.models", "regionlab.tasks.retrieval", "regionlab.tasks.reclip",
                    "regionlab.tasks.caption", "regionlab.tasks.generate",
                    "regionlab.region.maskinversion", "regionlab.ui", "regionlab.cli",
                    "regionlab.commands.caption", "regionlab.eval.shapes_regions",
                    "regionlab.shapes.views", "regionlab.shapes.captions"):
        assert surface in imported, surface
    assert out["leaked"] == [], out["leaked"]
    assert out["control"]


def _imported_modules(path: Path) -> set[str]:
    """Absolute names of the modules a file imports anywhere in it (relative ones resolved)."""
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join([*base, *([node.module] if node.module else [])])
            out.add(mod)
            out.update(f"{mod}.{a.name}" for a in node.names)
    return out


def test_no_library_module_imports_training_even_lazily():
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if "training" in path.relative_to(PACKAGE).parts:
            continue
        bad = sorted(m for m in _imported_modules(path)
                     if (m + ".").startswith("regionlab.training."))
        if bad:
            offenders[str(path.relative_to(ROOT))] = bad
    assert offenders == {}
    # the scan resolves relative imports: it sees the training scripts' own imports
    assert "regionlab.training.provenance" in _imported_modules(
        PACKAGE / "training" / "train_clip.py")
