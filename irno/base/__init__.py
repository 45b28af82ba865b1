"""Frozen base operators T_base: fetch or train, load in a forward mode, check, cache predictions.

- `irno.base.operator`  model directories (Hub / local / trained), `load_base`, forward modes
- `irno.base.train`     local training of a base on a prepared store
- `irno.base.check`     valid VRMSE under both forward modes vs The Well's published number
- `irno.base.cache`     h0 = T_base(x) for every sample, memory-mapped; `RefinementDataset`
"""

from irno.base.operator import BaseOperator, base_identity, fetch_base, load_base

__all__ = ["BaseOperator", "base_identity", "fetch_base", "load_base"]
