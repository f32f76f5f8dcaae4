"""AV-Synth: a generated audio-visual benchmark whose answers are known (scenes -> mp4 clips -> questions).

``generate(out_dir, SynthConfig(n_train=..., n_test=..., seed=...))`` writes the dataset folder (see
:mod:`avlm.synth.generate`); ``avlm synth OUT_DIR`` is the command line for it.
"""

from avlm.synth.generate import SynthConfig, generate
from avlm.synth.questions import caption, caption_attributes, parse_caption
from avlm.synth.scene import Scene, SceneObject, sample_scene

__all__ = ["SynthConfig", "generate", "caption", "caption_attributes", "parse_caption", "Scene", "SceneObject",
           "sample_scene"]
