import shutil
import subprocess
from pathlib import Path


def test_ruff_is_clean():
    ruff = shutil.which("ruff") or str(Path(__file__).parents[1] / ".venv/bin/ruff")
    root = Path(__file__).parents[1]
    out = subprocess.run([ruff, "check", str(root)], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout
