"""fusion: connectors (vision -> LLM, audio -> LLM) and token splicing."""

from fusion.ccam import CCAMProjector
from fusion.memory_bank import MemoryBank, mbc_compress

# Registry of connectors: name -> class. One line per entry; see build_connector.
CONNECTORS: dict[str, type] = {
    "ccam": CCAMProjector,
}

__all__ = ["CONNECTORS", "CCAMProjector", "MemoryBank", "mbc_compress"]
