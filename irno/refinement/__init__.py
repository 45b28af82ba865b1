"""The method: the refinement operator Phi and what trains and evaluates it.

- `irno.refinement.phi`        Phi's networks (U-Net, FNO), `conditioned`, `refine_steps`, `load_phi`
- `irno.refinement.objective`  the training objective: spatial, spectral and fixed-point terms
- `irno.refinement.ddp`        torchrun's process group; relaunching a training as N processes
- `irno.refinement.train`      the resumable training loop (`train_phi`)
- `irno.refinement.evaluate`   per-step metrics of a trained Phi on the test split
"""
