"""IRNO reproduction pipeline: the method, its data, base operators, evaluation and reports.

Subpackages and modules, in dependency order (each uses only those above it):

- ``irno.utils``      atomic writes, YAML/JSON, seeding, devices, hashing (shared with ROMA)
- ``irno.config``     dataclasses for every configurable step, built from plain dicts
- ``irno.data``       The Well: file format, download, loading, prepared stores (knows no model)
- ``irno.sim``        the embedded active-matter simulator that writes The Well's format
- ``irno.base``       frozen base operators (Hub / local), their check, the prediction cache
- ``irno.models``     the refinement operator Phi and the iteration h_{k+1} = h_k + alpha Phi
- ``irno.losses``     spatial, spectral and fixed-point terms
- ``irno.train``      the trainer (resume, non-finite policy)
- ``irno.evaluate``   per-step metrics and spectra
- ``irno.report``     tables and figures from saved evaluation outputs only
- ``irno.roma``       the ROMA study (shares ``irno.utils`` only)
- ``irno.cli``        the ``irno`` command the workflow rules call
"""

__version__ = "0.1.0"
