"""Batch inference: input discovery, resumable JSONL results, and the captioning / QA runners."""

from avlm.inference.inputs import VIDEO_EXTENSIONS, discover_inputs
from avlm.inference.results import ResultWriter, read_done

__all__ = ["VIDEO_EXTENSIONS", "discover_inputs", "ResultWriter", "read_done"]
