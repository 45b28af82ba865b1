"""The ROMA study: neural operators for many-body dynamics on random hyperbolic graphs, a PyTorch
port of the model code of Gabriel, Johnson, Karniadakis (arXiv 2502.15913; JAX code
``nngabe/roma``) with its datasets and experiments (docs/roma.md). Shares ``irno.files``,
``irno.settings``, ``irno.device`` and ``irno.resume`` with the IRNO pipeline.

Modules, in dependency order: ``settings`` (the settings dataclasses and their loaders),
``study`` (a study expanded into datasets and runs), ``graphs`` (random hyperbolic graphs,
random-walk subgraphs, graph encodings), ``kuramoto`` and ``burgers`` (the two dynamics),
``datasets`` (simulation and encodings on disk), ``models`` (ROMA and its baselines), ``train``
(split, batches, losses, the resumable loop), ``cost`` (FLOPs of a training step), ``evaluate``
(test metrics, attention maps), ``report`` (tables and figures), ``cli`` (``irno roma <verb>``).
"""
