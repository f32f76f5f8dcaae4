"""fusion: connectors (vision -> LLM, audio -> LLM) and token splicing."""

from fusion.memory_bank import MemoryBank, mbc_compress

# Registry of connectors: name -> class. One line per entry; see build_connector.
CONNECTORS: dict[str, type] = {}

__all__ = ["CONNECTORS", "MemoryBank", "mbc_compress"]
