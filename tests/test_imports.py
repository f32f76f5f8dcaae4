"""`import avlm, audio, vision, fusion` stays light: heavy optional libraries are imported only where used."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HEAVY_MODULES = ["transformers", "peft", "decord", "av", "librosa", "soundfile", "PIL", "rich", "matplotlib"]

PROBE = f"""
import json, sys
import avlm, audio, vision, fusion
print(json.dumps(sorted(name for name in {HEAVY_MODULES!r} if name in sys.modules)))
"""


def test_package_imports_do_not_load_heavy_modules() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"import failed:\n{result.stderr}"
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded == [], f"`import avlm, audio, vision, fusion` imported {loaded}; import them inside functions"
