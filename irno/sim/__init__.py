"""The embedded active-matter simulator: a closure-model re-simulation written in The Well's format.

It evolves only the moments of the orientation distribution that The Well's ``active_matter``
stores, closes the fourth moment with the 2D Bingham distribution and runs at low resolution
(32^2 - 128^2) on CPUs. It is *not* the dataset: it matches the real data in per-field statistics
only, and every file it writes says so. Detail: docs/simulator.md, docs/method.md#active-matter-equations

- ``irno.sim.active_matter``  the model and its integrator; `simulate_trajectory`
- ``irno.sim.dataset``        `simulate_dataset`: all splits, in parallel, restartable, + stats.yaml
- ``irno.sim.validate``       statistics against the real dataset's, and the no-NaN parameter sweep
"""

from irno.sim.active_matter import simulate_trajectory
from irno.sim.dataset import DESCRIPTION, simulate_dataset

__all__ = ["DESCRIPTION", "simulate_dataset", "simulate_trajectory"]
