"""``AutoModelForCausalLM.from_pretrained(avlm_folder)`` works in a fresh process once the model module is imported
(registration happens where the class is defined, no import hook)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PROBE = """
import sys
import avlm
assert "transformers" not in sys.modules, "import avlm loaded transformers"
import avlm.modeling.model  # registers model_type "avlm" with AutoConfig / AutoModelForCausalLM
from transformers import AutoConfig, AutoModelForCausalLM
model = AutoModelForCausalLM.from_pretrained(sys.argv[1])
print(type(model).__name__, type(AutoConfig.from_pretrained(sys.argv[1])).__name__)
"""


def test_auto_classes_load_an_avlm_folder_after_importing_the_model_module(tmp_path) -> None:
    from avlm.assembly import build_model

    model, processor = build_model("avlm-tiny", seed=0)
    model.save_pretrained(tmp_path / "model")
    result = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "model")], capture_output=True, text=True,
                            cwd=Path(__file__).resolve().parents[1], timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["AVLMForCausalLM", "AVLMConfig"]
