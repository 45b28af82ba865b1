"""The active-matter moment model with a Bingham closure, integrated pseudo-spectrally.

A *closure-model re-simulation* of The Well's ``active_matter`` physics at low resolution, not the
dataset: only the first moments of the orientation distribution evolve, the fourth is closed by
the Bingham distribution; it matches the real data in statistics only. State: concentration c and
the complex nematic moment Q = (D_xx - D_yy) + 2i D_xy, kept as three real fields (c, Re Q, Im Q)
on an N x N periodic grid of the 10 x 10 box. Numerics: rfft2 pseudo-spectral derivatives, 2/3
de-aliasing, Lawson (integrating-factor) RK4, a warm-started fixed-point iteration for the
velocity-dependent stress, |Q| <= 0.999 c after each step; float64, numpy / scipy.fft, one thread.

The equations, in full (`dipole` is the active dipole strength, The Well's alpha):
docs/method.md#active-matter-equations
"""

from __future__ import annotations

import numpy as np
from scipy import fft, special

from irno import IrnoError

BOX_LENGTH = 10.0  # L, the periodic box side
TRANSLATIONAL_DIFFUSION = 0.05  # dT
ROTATIONAL_DIFFUSION = 0.05  # dR
BETA = 0.8  # particle concentration parameter of the stress
Q_CAP = 0.999  # realisability: |Q| <= Q_CAP * c after every step
STEP_SWEEPS = 2  # velocity fixed-point sweeps per RK stage (warm-started: converged enough)
FRAME_TOLERANCE = 1e-9  # saved frames: sweep until the strain rate changes less than this (relative)
FRAME_MAX_SWEEPS = 60
IC_MODES = 8  # initial plane-wave perturbations, |k| in [1, 8] (the generator's)
IC_AMPLITUDE = 0.1


def _bingham_table(points: int = 2049) -> np.ndarray:
    """I2/I0 at the kappa where I1/I0 = s, for s on a uniform grid of [0, 1].

    For psi ~ exp(kappa cos 2(theta - theta0)): s = |Q| / c = I1/I0(kappa) and |R| / c = I2/I0(kappa).
    A uniform grid in s makes the lookup arithmetic (no search): it runs at every stage.
    """
    kappa = np.concatenate([[0.0], np.logspace(-4, 5, 20000)])
    i0 = special.ive(0, kappa)  # exponentially scaled: the scale cancels in the ratios
    s, r = special.ive(1, kappa) / i0, special.ive(2, kappa) / i0  # both increase with kappa
    return np.interp(np.linspace(0.0, 1.0, points), s, r)


BINGHAM_RATIO = _bingham_table()
BINGHAM_SLOPE = np.diff(BINGHAM_RATIO)


def bingham_closure(c: np.ndarray, q: np.ndarray) -> np.ndarray:
    """R = int e^{4i theta} psi of the Bingham distribution with moments (c, Q); complex, like q."""
    magnitude = np.abs(q)
    # fmin/fmax, not clip: a NaN of a diverging state must not become a wild index (it still
    # propagates through c and q, and the trajectory loop reports it).
    position = np.fmin(np.fmax(magnitude / np.maximum(c, 1e-12), 0.0), 1.0) * (len(BINGHAM_RATIO) - 1)
    index = np.minimum(position.astype(np.intp), len(BINGHAM_RATIO) - 2)
    ratio = BINGHAM_RATIO[index] + (position - index) * BINGHAM_SLOPE[index]  # I2/I0, linear interpolation
    direction2 = np.divide(q * q, magnitude * magnitude, out=np.zeros_like(q), where=magnitude > 0)  # (Q/|Q|)^2
    return c * ratio * direction2


class ActiveMatterModel:
    """Spectral operators and the time step for one (zeta, dipole) on an N x N grid."""

    def __init__(self, zeta: float, dipole: float, *, grid: int, dt: float):
        self.zeta, self.dipole, self.n, self.dt = float(zeta), float(dipole), int(grid), float(dt)
        n = self.n
        index_x = np.fft.fftfreq(n, 1.0 / n)[:, None]  # (N, 1) integer wavenumbers along x
        index_y = np.fft.rfftfreq(n, 1.0 / n)[None, :]  # (1, N/2+1) along y (real transform)
        kx = 2 * np.pi / BOX_LENGTH * index_x * np.ones_like(index_y)  # (N, N/2+1)
        ky = 2 * np.pi / BOX_LENGTH * index_y * np.ones_like(index_x)
        k2 = kx**2 + ky**2  # the Laplacian keeps the Nyquist modes
        # First derivatives drop the Nyquist wavenumber along their own axis: d/dx of the x-Nyquist
        # mode is not a real grid function. Stokes uses these k throughout, so div u = 0 exactly.
        self.kx = np.where(np.abs(index_x) == n // 2, 0.0, kx)
        self.ky = np.where(index_y == n // 2, 0.0, ky)
        self.ikx, self.iky = 1j * self.kx, 1j * self.ky
        stokes_k2 = self.kx**2 + self.ky**2
        self.inv_k2 = np.divide(1.0, stokes_k2, out=np.zeros_like(stokes_k2), where=stokes_k2 > 0)  # zero-mean u
        self.dealias = (np.abs(index_x) < n / 3) & (index_y < n / 3)
        linear = -TRANSLATIONAL_DIFFUSION * k2
        linear = np.stack(
            [linear, linear - 4 * ROTATIONAL_DIFFUSION, linear - 4 * ROTATIONAL_DIFFUSION]
        )  # (3, N, N/2+1)
        self.decay_step = np.exp(linear * self.dt)
        self.decay_half = np.exp(linear * self.dt / 2)

    # ------------------------------------------------------------------ fields

    def rfft(self, f: np.ndarray) -> np.ndarray:
        return fft.rfft2(f, axes=(-2, -1), workers=1)  # parallelism is across trajectories

    def irfft(self, fh: np.ndarray) -> np.ndarray:
        return fft.irfft2(fh, s=(self.n, self.n), axes=(-2, -1), workers=1)

    def initial_state(self, rng: np.random.Generator) -> np.ndarray:
        """(3, N, N) real (c, Re Q, Im Q): the moments of the generator's initial psi.

        The generator draws psi = 1 + sum_i a_i cos(k1 x' + r1) cos(k2 y' + r2) cos(2 theta + r3)^(i+1)
        (i = 0..7, a_i = 0.1 (r0 - 0.5), k1, k2 in 1..8, phases r in [0, 1) rad as it does) and
        normalises it to mean c = 1. Its theta moments are closed-form: even powers feed c,
        odd powers feed Q, through the averages of cos^m (binomial(m, m/2) / 2^m for even m).
        """
        x = np.arange(self.n) * BOX_LENGTH / self.n
        f = np.zeros((3, self.n, self.n))
        f[0] = 1.0
        for i in range(IC_MODES):
            k1, k2 = rng.integers(1, IC_MODES + 1, size=2)
            r0, r1, r2, r3 = rng.uniform(0.0, 1.0, size=4)
            amplitude = IC_AMPLITUDE * (r0 - 0.5)
            wave = np.outer(np.cos(2 * np.pi * k1 * x / BOX_LENGTH + r1), np.cos(2 * np.pi * k2 * x / BOX_LENGTH + r2))
            power = i + 1
            if power % 2 == 0:  # mean of cos^power over theta
                f[0] += amplitude * wave * _mean_cos_power(power)
            else:  # int cos^power(2 theta + r3) e^{2i theta} = e^{-i r3} * 2 pi * mean cos^(power+1)
                q = amplitude * wave * _mean_cos_power(power + 1) * np.exp(-1j * r3)
                f[1] += q.real
                f[2] += q.imag
        return f / f[0].mean()  # the generator's normalisation of psi to unit mean concentration

    def cap(self, f: np.ndarray) -> bool:
        """Impose |Q| <= Q_CAP c in place on a real (3, N, N) state; True if anything changed."""
        magnitude = np.hypot(f[1], f[2])
        limit = Q_CAP * np.maximum(f[0], 0.0)
        over = magnitude > limit
        if not over.any():
            return False
        f[1:, over] *= limit[over] / magnitude[over]
        return True

    # ------------------------------------------------------------------ flow

    def velocity(self, c, q, r, e, *, sweeps: int, tolerance: float = 0.0):
        """Solve Stokes with the velocity-dependent stress by fixed-point sweeps from the guess e.

        c: (N, N) real; q, r, e: (N, N) complex (e = E_xx + i E_xy, the guess).
        Returns u, v (velocity components), e (strain rate of that u) and w (vorticity / 2), all
        real-space (N, N). Stops early once e changes less than `tolerance` (relative).
        """
        stress_without_e = self.dipole * q - 0.5 * self.zeta * BETA * (c * q - np.conj(q) * r)
        for _ in range(sweeps):
            sigma = stress_without_e + 0.5 * BETA * (c * e + np.conj(e) * r)  # Sxx - Syy + 2i Sxy
            sh = self.rfft(np.stack([sigma.real, sigma.imag])) / 2  # (2, N, N/2+1): Sxx (= -Syy), Sxy
            fx = self.ikx * sh[0] + self.iky * sh[1]  # div Sigma
            fy = self.ikx * sh[1] - self.iky * sh[0]
            along_k = (self.kx * fx + self.ky * fy) * self.inv_k2  # remove the gradient part
            uh = (fx - self.kx * along_k) * self.inv_k2  # u^ = (I - k k^T / k^2)(i k . Sigma^) / k^2
            vh = (fy - self.ky * along_k) * self.inv_k2
            uy, vx = self.iky * uh, self.ikx * vh
            exx, exy = self.irfft(np.stack([self.ikx * uh, (uy + vx) / 2]))  # (N, N) each
            e_new = exx + 1j * exy
            converged = tolerance > 0 and np.abs(e_new - e).max() <= tolerance * np.abs(e_new).max()
            e = e_new
            if converged:
                break
        u, v, w = self.irfft(np.stack([uh, vh, (uy - vx) / 2]))
        return u, v, e, w

    def tendency(self, fh: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Non-linear part of d/dt of the spectral state fh (3, N, N/2+1), de-aliased; and the new e."""
        f = self.irfft(fh)  # (3, N, N)
        c, q = f[0], f[1] + 1j * f[2]
        r = bingham_closure(c, q)
        u, v, e, w = self.velocity(c, q, r, e, sweeps=STEP_SWEEPS)
        g = self.zeta * q + e
        reaction = -2j * w * q + c * g - np.conj(g) * r
        products = self.rfft(
            np.stack([u * f[0], v * f[0], u * f[1], v * f[1], u * f[2], v * f[2], reaction.real, reaction.imag])
        )
        out = -(self.ikx * products[0:6:2] + self.iky * products[1:6:2])  # -div(u f), conservative
        out[1:] += products[6:]
        return out * self.dealias, e

    def step(self, fh: np.ndarray, e: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One Lawson-RK4 step: returns the spectral state, the real state (capped) and the last e."""
        dt, full, half = self.dt, self.decay_step, self.decay_half
        k1, e = self.tendency(fh, e)
        k2, e = self.tendency(half * (fh + dt / 2 * k1), e)
        k3, e = self.tendency(half * fh + dt / 2 * k2, e)
        k4, e = self.tendency(full * fh + dt * half * k3, e)
        fh = full * fh + dt / 6 * (full * k1 + 2 * half * (k2 + k3) + k4)
        f = self.irfft(fh)
        if self.cap(f):
            fh = self.rfft(f)
        return fh, f, e

    def observe(self, f: np.ndarray, e: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
        """The saved fields of a real state f (3, N, N) with its converged velocity; and that e."""
        c, q = f[0], f[1] + 1j * f[2]
        u, v, e, _ = self.velocity(c, q, bingham_closure(c, q), e, sweeps=FRAME_MAX_SWEEPS, tolerance=FRAME_TOLERANCE)
        D = 0.5 * np.stack([np.stack([c + f[1], f[2]], -1), np.stack([f[2], c - f[1]], -1)], -2)  # (N, N, 2, 2)
        E = np.stack([np.stack([e.real, e.imag], -1), np.stack([e.imag, -e.real], -1)], -2)  # traceless
        return {"concentration": c.copy(), "velocity": np.stack([u, v], -1), "D": D, "E": E}, e


def _mean_cos_power(m: int) -> float:
    """Average of cos^m over a period."""
    return 0.0 if m % 2 else special.comb(m, m // 2, exact=True) / 2.0**m


def simulate_trajectory(
    zeta: float,
    dipole: float,
    *,
    grid: int = 64,
    frames: int = 81,
    frame_dt: float = 0.25,
    dt: float = 0.025,
    seed: int | np.random.SeedSequence = 0,
) -> dict[str, np.ndarray]:
    """One trajectory, float64. Keys and shapes (T = frames, N = grid):

    ``time`` (T,), ``concentration`` (T, N, N), ``velocity`` (T, N, N, 2), ``D`` (T, N, N, 2, 2),
    ``E`` (T, N, N, 2, 2); spatial axes are (x, y), tensor components row-major.
    Raises IrnoError if the state stops being finite.
    """
    steps_per_frame = round(frame_dt / dt)
    if steps_per_frame < 1 or abs(steps_per_frame * dt - frame_dt) > 1e-9 * frame_dt:
        raise IrnoError(f"frame_dt {frame_dt} must be a whole multiple of dt {dt}")
    model = ActiveMatterModel(zeta, dipole, grid=grid, dt=dt)
    f = model.initial_state(np.random.default_rng(seed))
    fh = model.rfft(f)
    e = np.zeros((grid, grid), dtype=complex)
    out = {
        "concentration": np.empty((frames, grid, grid)),
        "velocity": np.empty((frames, grid, grid, 2)),
        "D": np.empty((frames, grid, grid, 2, 2)),
        "E": np.empty((frames, grid, grid, 2, 2)),
    }
    for frame in range(frames):
        if frame:
            for _ in range(steps_per_frame):
                fh, f, e = model.step(fh, e)
            if not np.isfinite(f).all():
                raise IrnoError(
                    f"simulation diverged (non-finite state) at t = {frame * frame_dt:g} for zeta={zeta}, "
                    f"alpha={dipole}, grid={grid}, dt={dt}; a smaller dt may help (RK4 needs dt < ~0.7/zeta)"
                )
        observed, e = model.observe(f, e)
        for key, value in observed.items():
            out[key][frame] = value
    out["time"] = np.arange(frames) * frame_dt
    return out
