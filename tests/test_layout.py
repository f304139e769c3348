"""The package layout: wings whose imports run one way, checked on the import graph.

    kernels <- losses <- explain <- train <- uploads <- figures <- ui <- pages

A module may import segloss modules of its own wing or of a wing to its left; ``losses`` and
``kernels`` import only the standard library, torch, numpy (and triton; scipy for the boundary
loss's distance transform, in ``losses/boundary.py`` alone); plotly only under
``figures``; PIL not in the loss core or the explanations; streamlit never under ``segloss``.
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WINGS = ("kernels", "losses", "explain", "train", "uploads", "figures")
RANK = {wing: i for i, wing in enumerate(WINGS)}
CORE_THIRD_PARTY = {"torch", "numpy", "triton"}
THIRD_PARTY_ALLOWED = {  # wing -> third-party top-level packages it may import
    "kernels": CORE_THIRD_PARTY, "losses": CORE_THIRD_PARTY | {"scipy"}, "explain": CORE_THIRD_PARTY,
    "train": CORE_THIRD_PARTY | {"PIL"}, "uploads": CORE_THIRD_PARTY | {"PIL"},
    "figures": CORE_THIRD_PARTY | {"PIL", "plotly"},
}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """Every ``(line, dotted module)`` a file imports, function-local imports included."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found.append((node.lineno, base))
            found += [(node.lineno, f"{base}.{alias.name}") for alias in node.names]  # `from segloss import x`
    return found


def wing_of_module(dotted: str) -> str | None:
    parts = dotted.split(".")
    if parts[0] != "segloss" or len(parts) < 2 or parts[1] not in RANK:
        return None
    return parts[1]


def segloss_files():
    return sorted((ROOT / "segloss").rglob("*.py"))


def test_every_module_sits_in_a_wing_or_is_the_public_entry():
    top_level = {p.name for p in (ROOT / "segloss").glob("*.py")}
    assert top_level == {"__init__.py", "__main__.py", "cli.py"}, top_level
    folders = {p.name for p in (ROOT / "segloss").iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(WINGS), folders


def test_imports_run_one_way_between_wings():
    wrong = []
    for path in segloss_files():
        rel = path.relative_to(ROOT / "segloss")
        wing = rel.parts[0] if len(rel.parts) > 1 else None
        for line, dotted in imports_of(path):
            target = wing_of_module(dotted)
            if target is None or wing is None:
                continue
            if RANK[target] > RANK[wing]:
                wrong.append(f"segloss/{rel}:{line} ({wing}) imports {dotted} ({target})")
    assert not wrong, "imports against the wing order:\n" + "\n".join(wrong)


def test_the_package_entry_imports_only_the_loss_core():
    for line, dotted in imports_of(ROOT / "segloss" / "__init__.py"):
        target = wing_of_module(dotted)
        assert target in (None, "losses", "kernels"), f"segloss/__init__.py:{line} imports {dotted}"


def test_third_party_imports_stay_in_their_wings():
    wrong = []
    stdlib = set(sys.stdlib_module_names)
    for path in segloss_files():
        rel = path.relative_to(ROOT / "segloss")
        wing = rel.parts[0] if len(rel.parts) > 1 else None
        for line, dotted in imports_of(path):
            top = dotted.split(".")[0]
            if top in stdlib or top in ("segloss", "__future__", ""):
                continue
            if top == "scipy" and rel.as_posix() != "losses/boundary.py":
                wrong.append(f"segloss/{rel}:{line} imports scipy (only losses/boundary.py may)")
            elif top == "streamlit" or (wing is not None and top not in THIRD_PARTY_ALLOWED[wing]):
                wrong.append(f"segloss/{rel}:{line} ({wing or 'top level'}) imports {dotted}")
    assert not wrong, "\n".join(wrong)


def test_the_library_never_imports_the_app():
    for path in segloss_files():
        for line, dotted in imports_of(path):
            assert dotted.split(".")[0] not in ("ui", "pages", "app"), f"{path}:{line} imports {dotted}"
    for path in sorted((ROOT / "ui").glob("*.py")):
        for line, dotted in imports_of(path):
            assert dotted.split(".")[0] not in ("pages", "app"), f"{path}:{line} imports {dotted}"


def test_import_segloss_loads_only_the_loss_core_and_analysis_on_demand():
    code = ("import sys, segloss\n"
            "before = sorted(m for m in sys.modules if m.split('.')[0] in ('segloss', 'plotly', 'PIL', 'streamlit'))\n"
            "segloss.analysis.gradient_map\n"
            "after = sorted(m for m in sys.modules if m.split('.')[0] in ('plotly', 'PIL', 'streamlit'))\n"
            "print(repr(before)); print(repr(after))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    before, after = (eval(line) for line in out.stdout.strip().splitlines())
    assert {m.split(".")[1] for m in before if "." in m} == {"losses", "kernels"}, before
    assert after == [], after  # segloss.analysis pulls in no plotting or UI library


@pytest.mark.parametrize("old", ["segloss._fused", "segloss._compiled", "segloss.viz", "segloss.training",
                                 "segloss.uploads.uploads", "segloss._upload_decode", "segloss.pixel_maps",
                                 "segloss.registry", "segloss.region", "segloss.data", "segloss.live"])
def test_old_flat_module_paths_are_gone(old):
    assert importlib.util.find_spec(old) is None, f"{old} still importable"
