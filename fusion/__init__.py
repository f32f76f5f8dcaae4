"""fusion: connectors (vision -> LLM, audio -> LLM) and token splicing."""

import inspect
from typing import Any

from torch import nn

from fusion.bt_adapter import BTAdapter
from fusion.ccam import CCAMProjector
from fusion.memory_bank import MemoryBank, mbc_compress
from fusion.memory_bank_connector import MemoryBankConnector
from fusion.mlp import MLPProjector
from fusion.pool import LinearConnector, SpatialPoolConnector
from fusion.stc import STCConnector, STCConnectorV35
from fusion.token_merge import merge_modal_embeddings

# Registry of connectors: name -> class. One line per entry; see build_connector.
CONNECTORS: dict[str, type] = {
    "stc_connector": STCConnector,
    "stc_connector_v35": STCConnectorV35,
    "mlp2x_gelu": MLPProjector,
    "spatial_pool": SpatialPoolConnector,
    "linear": LinearConnector,
    "ccam": CCAMProjector,
    "memory_bank": MemoryBankConnector,
}


def build_connector(name: str, input_dim: int, output_dim: int, **options: Any) -> nn.Module:
    """Build a registered connector (random init): encoder width ``input_dim`` -> LLM width ``output_dim``.

    Args:
        name: a key of ``CONNECTORS``.
        input_dim: width of the encoder tokens.
        output_dim: width of the LLM.
        **options: the connector's own options (e.g. ``sampler_padding``, ``grid``, ``num_queries``).
    """
    if name not in CONNECTORS:
        raise ValueError(f"unknown connector {name!r}; choose one of {sorted(CONNECTORS)}")
    parameters = inspect.signature(CONNECTORS[name]).parameters
    if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):  # **options check themselves
        valid = sorted(set(parameters) - {"input_dim", "output_dim"})
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise ValueError(f"unknown options {unknown} for connector {name!r}; its options are {valid}")
    return CONNECTORS[name](input_dim, output_dim, **options)


__all__ = ["CONNECTORS", "build_connector", "CCAMProjector", "BTAdapter", "MemoryBank", "MemoryBankConnector",
           "mbc_compress", "MLPProjector", "LinearConnector", "SpatialPoolConnector", "STCConnector", "STCConnectorV35",
           "merge_modal_embeddings"]
