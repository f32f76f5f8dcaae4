"""fusion: connectors (vision -> LLM, audio -> LLM) and token splicing."""

# Registry of connectors: name -> class. One line per entry; see build_connector.
CONNECTORS: dict[str, type] = {}

__all__ = ["CONNECTORS"]
