"""The package's promises outside the math: no UI import, and the README example runs as written."""

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_importing_segloss_does_not_import_streamlit():
    code = "import sys, segloss; from segloss import functional; print('streamlit' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


def test_no_module_under_segloss_imports_streamlit():
    for path in (ROOT / "segloss").rglob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+streamlit", path.read_text(), re.M), path


def test_readme_training_loop_example_runs_as_written():
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    examples = [b for b in blocks if "optimizer" in b and "segloss" in b]
    assert examples, "README lost its training-loop example"
    for code in examples:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
        assert out.returncode == 0, out.stderr
