"""The embedded active-matter simulator: a closure-model re-simulation written in The Well's format.

What it is, honestly: The Well's ``active_matter`` data come from a kinetic theory of active rod
suspensions that evolves the full orientation distribution psi(x, y, theta) (256^2 x 256 angles,
repository SuryanarayanaMK/Learning_closures). This package evolves only the moments of psi that
the dataset stores (concentration c, orientation tensor D, with velocity u and strain rate E from
Stokes flow), closes the fourth moment with the 2D Bingham distribution and runs at low resolution
(32^2 - 128^2) on CPUs (docs/method.md#active-matter-equations). It is *not* the dataset and does
not reproduce its trajectories; it matches the real data in per-field statistics only (checked by
``irno.sim.validate``). Every file it writes says so in its ``source`` attribute, and the dataset
manifest in ``description``.

- ``irno.sim.active_matter``  the model and its integrator; `simulate_trajectory`
- ``irno.sim.dataset``        `simulate_dataset`: all splits, in parallel, restartable, + stats.yaml
- ``irno.sim.validate``       statistics against the real dataset's, and the no-NaN parameter sweep
"""

from irno.sim.active_matter import simulate_trajectory
from irno.sim.dataset import DESCRIPTION, simulate_dataset

__all__ = ["DESCRIPTION", "simulate_dataset", "simulate_trajectory"]
