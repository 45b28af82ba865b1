"""The ROMA study: neural operators for many-body dynamics on random hyperbolic graphs.

Ports the model code of Gabriel, Johnson, Karniadakis, "Connecting the geometry and dynamics of
many-body complex systems with message passing neural operators" (arXiv 2502.15913; JAX code
``nngabe/roma``) to PyTorch, with its Kuramoto and Burgers-like datasets and experiments (what
still differs, and by how much: docs/roma.md). Shares the utilities (``irno.files``,
``irno.settings``, ``irno.device``, ``irno.resume``) with the IRNO pipeline.

Modules, in dependency order:

- ``config``    dataclasses (data, encodings, model, training, study) and the study plan (grids -> runs)
- ``graphs``    random hyperbolic graphs (radial-band sweep), random-walk subgraphs, graph encodings
- ``kuramoto``  Kuramoto dynamics on sparse operators, adaptive float64 integration
- ``burgers``   Burgers-like social dynamics: aggregation curves, smoothing, message-passing coupling
- ``datasets``  simulation into HDF5, graph encodings on disk, loading
- ``models``    ROMA (HGCN encoder, renormalisation, multiscale Transformer, DeepONet, learned PDE) and baselines
- ``train``     split, batches, losses, the resumable training loop
- ``cost``      FLOPs of a training step at a run's real sizes, counted without weights or data
- ``evaluate``  test metrics and attention maps of a trained run
- ``report``    tables, power-law fits and figures from saved outputs only
- ``cli``       the ``irno roma <verb>`` commands
"""
