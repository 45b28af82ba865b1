"""Phi training throughput: a reference-style loop against irno.refinement.train, side by side.

    python -m benchmarks.train [--quick] [--grid 64] [--batch 8] [--threads 2]
    python -m benchmarks.train --grid 256 --batch 16 --data synthetic [--compile]      # on a GPU

Data: active_matter simulated by irno.sim (64^2 by default; `--data synthetic`: smooth random
waves, for large grids), prepared into stores, and h0 cached from an untrained FNO of the
published base's size (width 128, 16 modes; time does not depend on the weights).

The reference-style loop re-creates the released reference's training step (its loss
semantics are in irno/refinement/objective.py): samples read one by one through The Well's `WellDataset` by a
DataLoader, h0 = base(x) recomputed every batch, Phi with torch's circular convolutions and its
LayerNorm through permutes on channels-first tensors, the K steps' losses one by one (both rfft2s
and the spectral weight grid rebuilt at every step), `.item()` every step, Adam, fp32.
Ours is `irno.refinement.train.train_phi` as the workflow runs it: prepared store + base cache, one
vectorised objective, Phi channels_last with one-copy circular padding, no host sync per batch;
on CUDA with bf16 autocast (and torch.compile with --compile). Both are timed by whole epochs that
end as training epochs do, in a validation (one batch, K steps) and a checkpoint written: the
reference's valid MSE with the base recomputed and its `best_model.pth`; ours a one-epoch
`train_phi` call, set-up and all its files included. Both start from the same Phi weights;
the loss of the first batch must agree within 1e-5 relative (computed in fp32 for both).

Also measured: per-batch costs of each part of both loops, Phi's objective (forward + backward)
under each combination of the operators that changed (what each change bought), and with
--vrmse-epochs the valid VRMSE of a short training on the fast path against the plain one
(channels-first on CPU; fp32 channels-first on CUDA) and against a second seed (run-to-run noise).
"""

from __future__ import annotations

import contextlib
import copy
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Subset

from benchmarks import common
from irno.config import EvalConfig, LossConfig, NetworkConfig, PhiConfig, PhiTrainConfig
from irno.data.batches import epoch_batches
from irno.data.well import open_well_dataset, window_to_xy
from irno.device import select_device
from irno.files import read_json
from irno.refinement.objective import lambda_schedule, objective, term_weights
from irno.refinement.phi import ChannelLayerNorm, PaddedConv2d, build_phi, phi_memory_format
from irno.refinement.train import Objective, train_phi
from irno.resume import seed_everything

NAME = "train"


# ----------------------------------------------------------------------------- the reference's operators


class VarMeanLayerNorm(nn.LayerNorm):
    """A channel LayerNorm computing its statistics with var_mean over dim 1, no permutes (slower on CPU)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)  # (B, 1, H, W)
        return (x - mean) * torch.rsqrt(var + self.eps) * self.weight[:, None, None] + self.bias[:, None, None]


class TorchPaddedConv2d(PaddedConv2d):
    """PaddedConv2d with torch's circular padding (F.pad, which autograd records slice by slice)."""

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        return nn.Conv2d._conv_forward(self, x, weight, bias)


class Concatenated(nn.Module):
    """`phi` seen as a plain module: every call gets cat[x, h] (x's share of the first conv is recomputed)."""

    def __init__(self, phi: nn.Module):
        super().__init__()
        self.phi = phi

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.phi(inputs)


def with_operators(phi: nn.Module, *, torch_pad: bool, var_mean_norm: bool, concatenated: bool) -> nn.Module:
    """A copy of the U-Net `phi` (same weights) with some of its fast operators swapped for plain ones."""
    phi = copy.deepcopy(phi)
    for module in list(phi.modules()):
        for child in module.children():
            if torch_pad and isinstance(child, PaddedConv2d):
                child.__class__ = TorchPaddedConv2d  # same parameters, torch's padding
            elif var_mean_norm and isinstance(child, ChannelLayerNorm):
                child.__class__ = VarMeanLayerNorm
    return Concatenated(phi) if concatenated else phi


def reference_phi(phi: nn.Module) -> nn.Module:
    """The reference's operators with `phi`'s weights, for channels-first inputs.

    ChannelLayerNorm is the reference's LayerNorm through permutes (it copies on channels-first
    tensors); the convolutions get torch's circular padding back, and every call the concatenation.
    """
    return with_operators(phi, torch_pad=True, var_mean_norm=False, concatenated=True).to(
        memory_format=torch.contiguous_format
    )


def reference_spectral_loss(pred: torch.Tensor, target: torch.Tensor, lam: float) -> torch.Tensor:
    """The reference's per-step spectral term: both transforms and the weight grid built on every call.

    Unnormalised rfft2 amplitudes with the loss divided by H W: the same as irno.refinement.objective' ortho ones.
    """
    H, W = pred.shape[-2:]
    amp_pred = torch.fft.rfft2(pred).abs()  # (B, F, H, W//2+1)
    amp_target = torch.fft.rfft2(target).abs()
    fy = torch.fft.fftfreq(H, device=pred.device)
    fx = torch.fft.rfftfreq(W, device=pred.device)
    radius = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)  # (H, W//2+1), Nyquist 0.5
    rho = 1.0 + (radius / 0.5) ** lam
    rho = rho / rho.mean()
    return (rho * (amp_pred - amp_target) ** 2).mean() / (H * W)


def reference_steps(phi, x, h0, alpha: float, K: int):
    """h_1 .. h_K as the reference unrolls them: Phi sees the concatenation at every step."""
    h = h0
    for _ in range(K):
        h = h + alpha * phi(torch.cat([x, h], dim=1))
        yield h


def reference_loss(
    phi, x, h0, y, loss: LossConfig, K: int, alpha: float, beta_s: float, beta_fp: float
) -> torch.Tensor:
    """(1/K) sum_k [MSE + beta_s L_spec(lambda_k)] + beta_fp mean(Phi(cat[x, y])^2), step by step,
    each step's terms read back to the host for logging as the reference does."""
    total = 0.0
    for k, h in enumerate(reference_steps(phi, x, h0, alpha, K)):
        lam = lambda_schedule(k, K, loss.lambda_start, loss.lambda_end)
        spatial, spectral = F.mse_loss(h, y), reference_spectral_loss(h, y, lam)
        _ = spatial.item(), spectral.item()  # a host sync per term: the reference logs them
        total = total + spatial + beta_s * spectral
    fixed_point = phi(torch.cat([x, y], dim=1)).pow(2).mean()
    _ = fixed_point.item()
    return total / K + beta_fp * fixed_point


class WellWindows(Dataset):
    """Training windows read one at a time through The Well's WellDataset: (x, y) per item."""

    def __init__(self, manifest: Path, split: str):
        m = read_json(manifest)
        self.ds = open_well_dataset(m["root"], m["dataset"], split)

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        return window_to_xy(self.ds[i])  # (T_in*F, H, W), (F, H, W)


class ReferenceLoop:
    """The reference's training loop over given batches, from one initial Phi state each epoch.

    Like the reference (whose evaluation reads `checkpoints/best_model.pth`), an epoch ends with a
    validation on `valid` and the best model saved, when `valid` is given.
    """

    def __init__(
        self,
        phi: nn.Module,
        base: nn.Module,
        windows: Dataset,
        cfg: PhiConfig,
        device,
        valid: Dataset | None = None,
    ):
        self.initial = reference_phi(phi)
        self.base, self.windows, self.cfg, self.device, self.valid = base, windows, cfg, device, valid

    def loader(self, batches):
        return DataLoader(self.windows, batch_sampler=[b.tolist() for b in batches])

    def fresh(self):
        phi = copy.deepcopy(self.initial).train()
        tc = self.cfg.train
        return phi, torch.optim.Adam(phi.parameters(), lr=tc.lr, weight_decay=tc.weight_decay)

    def epoch(self, batches, epoch: int = 1, parts: common.Parts | None = None) -> list[float]:
        """Train one epoch over `batches`; the loss of every step. `parts` times each part of a step."""
        tc = self.cfg.train
        part = parts or common.Parts(enabled=False)
        beta_s, beta_fp = term_weights(self.cfg.loss, epoch)
        phi, optimizer = self.fresh()
        losses = []
        items = iter(self.loader(batches))
        for _ in batches:
            with part("read"):
                x, y = (t.to(self.device) for t in next(items))
            with part("base"), torch.no_grad():
                h0 = self.base(x)
            with part("forward_backward"):
                loss = reference_loss(phi, x, h0, y, self.cfg.loss, tc.K, tc.alpha, beta_s, beta_fp)
                if not torch.isfinite(loss):  # the reference skips a non-finite batch here
                    continue
                optimizer.zero_grad()
                loss.backward()
            with part("step"):
                nn.utils.clip_grad_norm_(phi.parameters(), tc.grad_clip)
                optimizer.step()
                losses.append(loss.item())  # the reference logs every step
        if self.valid is not None:
            with tempfile.TemporaryDirectory() as out:
                self.validate(phi, Path(out))
        return losses

    @torch.no_grad()
    def validate(self, phi: nn.Module, out_dir: Path) -> float:
        """Valid MSE after K steps from the recomputed base; the model saved as the best (epoch 1 always is)."""
        tc = self.cfg.train
        phi.eval()
        sse, n = 0.0, 0
        for x, y in DataLoader(self.valid, batch_size=tc.batch_size):
            x, y = x.to(self.device), y.to(self.device)
            *_, h = reference_steps(phi, x, self.base(x), tc.alpha, tc.K)  # h_K
            sse += F.mse_loss(h, y, reduction="sum").item() / h[0].numel()
            n += len(y)
        phi.train()
        torch.save(phi.state_dict(), out_dir / "best_model.pth")
        return sse / n


# ----------------------------------------------------------------------------- ours


class FirstSamples(Dataset):
    """The first `n` samples of a dataset with `batch` (validation on one batch: the epoch stays training)."""

    def __init__(self, dataset, n: int):
        self.dataset, self.n = dataset, min(n, len(dataset))
        self.field_names = dataset.field_names

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.dataset[i]

    def batch(self, rows):
        return self.dataset.batch(rows)


def our_config(args, *, fast: bool = True, seed: int = 42, epochs: int = 1) -> PhiConfig:
    """The paper's Phi and objective; on CUDA the fast path is bf16 + channels_last (+ compile)."""
    cuda = torch.cuda.is_available()
    train = PhiTrainConfig(
        epochs=epochs,
        batch_size=args.batch,
        seed=seed,
        device="cuda" if cuda else "cpu",
        channels_last=fast,
        bf16=fast and cuda,
        compile=fast and cuda and args.compile,
    )
    return PhiConfig(network=NetworkConfig(), loss=LossConfig(), train=train)


def initial_phi(cfg: PhiConfig, device) -> nn.Module:
    """Phi as train_phi builds it: seeded, in its memory format."""
    seed_everything(cfg.train.seed)
    memory_format = phi_memory_format(cfg.network, cfg.train.channels_last)
    return build_phi(cfg.network, 55, 11).to(device, memory_format=memory_format)


def our_parts(cfg: PhiConfig, data, batches, device, part: common.Parts) -> None:
    """Our loop's parts timed one by one: the code train_phi runs per batch."""
    tc = cfg.train
    fmt = phi_memory_format(cfg.network, tc.channels_last)
    phi = initial_phi(cfg, device).train()
    model = Objective(phi, cfg.loss, tc.K, tc.alpha)
    optimizer = torch.optim.Adam(phi.parameters(), lr=tc.lr, weight_decay=tc.weight_decay, fused=True)
    beta_s, beta_fp = term_weights(cfg.loss, 1)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=tc.bf16 and device.type == "cuda")
    for rows in batches:
        with part("read"):
            x, h0, y = (t.to(device, memory_format=fmt, non_blocking=True) for t in data.batch(rows))
        with part("forward_backward"):
            with autocast:
                total, _ = model(x, h0, y, beta_s, beta_fp)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
        with part("step"):
            norm = nn.utils.clip_grad_norm_(phi.parameters(), tc.grad_clip)
            optimizer.found_inf = (~torch.isfinite(total.detach()) | ~torch.isfinite(norm)).float()
            optimizer.step()


# ----------------------------------------------------------------------------- measurements


@contextlib.contextmanager
def exact_fp32():
    """CUDA convolutions and matrix products in full fp32 (cuDNN's default for convolutions is
    TF32, ~1e-3 relative): for the h0 cache and the loss check, which compare exact arithmetic."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


@exact_fp32()
def loss_check(cfg: PhiConfig, data, reference: ReferenceLoop, first: np.ndarray, device) -> tuple[float, float]:
    """(ours, reference) loss of the first batch of epoch 1 from the same initial Phi, in fp32."""
    tc = cfg.train
    fmt = phi_memory_format(cfg.network, tc.channels_last)
    beta_s, beta_fp = term_weights(cfg.loss, 1)
    phi = initial_phi(cfg, device).train()
    x, h0, y = (t.to(device, memory_format=fmt) for t in data.batch(first))
    ours = Objective(phi, cfg.loss, tc.K, tc.alpha)(x, h0, y, beta_s, beta_fp)[0].item()
    ref_phi, _ = reference.fresh()
    x, y = (t.to(device) for t in next(iter(reference.loader([first]))))
    with torch.no_grad():
        h0 = reference.base(x)
    ref = reference_loss(ref_phi, x, h0, y, cfg.loss, tc.K, tc.alpha, beta_s, beta_fp).item()
    return ours, ref


def phi_variants(cfg: PhiConfig, data, rows, device, repeats: int, quick: bool) -> list[dict]:
    """Phi's objective, forward + backward on one batch, under each combination of the changed operators."""
    tc = cfg.train
    phi = initial_phi(cfg, device).train()
    variants = [  # name, (torch's circular padding, var_mean norm, concatenated input), channels_last
        (
            "plain operators: torch padding, var_mean norm, concatenated input, channels-first",
            (True, True, True),
            False,
        ),
        (
            "reference operators: torch padding, LayerNorm via permutes, concatenated input, channels-first",
            (True, False, True),
            False,
        ),
        ("+ one-copy circular padding", (False, False, True), False),
        ("+ channels_last", (False, False, True), True),
        ("+ x's share of the first conv once per batch (ours)", (False, False, False), True),
        ("ours with the var_mean norm (channels_last)", (False, True, False), True),
        ("one-copy padding, var_mean norm, concatenated input, channels-first", (False, True, True), False),
    ]
    if quick:
        variants = variants[:5]
    beta_s, beta_fp = term_weights(cfg.loss, 1)
    batch = data.batch(rows)
    cases = {}
    for name, (torch_pad, var_mean_norm, concatenated), channels_last in variants:
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        module = with_operators(phi, torch_pad=torch_pad, var_mean_norm=var_mean_norm, concatenated=concatenated).to(
            memory_format=fmt
        )
        x, h0, y = (t.to(device, memory_format=fmt) for t in batch)

        def run(module=module, x=x, h0=h0, y=y):
            module.zero_grad(set_to_none=True)
            total, _ = objective(
                module, x, h0, y, cfg.loss, K=tc.K, alpha=tc.alpha, beta_spectral=beta_s, beta_fixed_point=beta_fp
            )
            total.backward()

        run()  # warm-up: kernels and primitives for these shapes
        cases[name] = run
    best = {name: min(s["wall"]) for name, s in common.interleaved(cases, repeats).items()}
    reference = best[variants[1][0]]
    return [
        {
            "part": "Phi objective fwd+bwd, one batch",
            "variant": name,
            "seconds": b,
            "speedup_vs_reference_operators": reference / b,
        }
        for name, b in best.items()
    ]


def vrmse_check(args, data, device) -> tuple[list[dict], list[dict]]:
    """Valid VRMSE at K after a short training: fast path vs plain path vs plain with another seed."""
    from irno.refinement.evaluate import evaluate
    from irno.refinement.phi import load_phi

    runs = {"fast path, seed 42": our_config(args, fast=True, seed=42, epochs=args.vrmse_epochs),
            "plain path, seed 42": our_config(args, fast=False, seed=42, epochs=args.vrmse_epochs),
            "plain path, seed 43": our_config(args, fast=False, seed=43, epochs=args.vrmse_epochs)}  # fmt: skip
    vrmse = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, cfg in runs.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            train_phi(cfg, data["train"], data["valid"], out)
            phi, _, _ = load_phi(out / "checkpoint.pt", device)
            result = evaluate(
                phi,
                data["valid"],
                K=cfg.train.K,
                alpha=cfg.train.alpha,
                cfg=EvalConfig(extra_steps=0, device=str(device)),
            )
            vrmse[name] = float(result.summary["vrmse_refined"])
    change = abs(vrmse["fast path, seed 42"] - vrmse["plain path, seed 42"])
    noise = abs(vrmse["plain path, seed 43"] - vrmse["plain path, seed 42"])
    rows = [
        {"part": f"valid VRMSE at K after {args.vrmse_epochs} epochs", "variant": name, "vrmse": v}
        for name, v in vrmse.items()
    ]
    heads = [
        common.headline(
            "VRMSE change, fast vs plain path",
            change,
            "",
            f"<= 2 x seed-to-seed change ({noise:.3g})",
            change <= 2 * noise,
        )
    ]
    return rows, heads


def main(argv: list[str] | None = None) -> dict:
    p = common.parser(NAME, __doc__)
    cuda = torch.cuda.is_available()
    p.add_argument("--grid", type=int, default=256 if cuda else 64)
    p.add_argument("--batch", type=int, default=16 if cuda else 8)
    p.add_argument("--data", choices=["simulated", "synthetic"], default="synthetic" if cuda else "simulated")
    p.add_argument("--trajectories", type=int, help="training trajectories (default: 2 quick, 4 full)")
    p.add_argument("--frames", type=int, help="frames per trajectory (default: 24 quick, 40 full)")
    p.add_argument("--repeats", type=int, help="interleaved timed epochs of each loop (default: 3 quick, 4 full)")
    p.add_argument("--compile", action="store_true", help="torch.compile Phi in our loop (CUDA only)")
    p.add_argument("--vrmse-epochs", type=int, help="epochs of the VRMSE check, 0 to skip (default: 0 quick, 3 full)")
    args = p.parse_args(argv)
    quick = args.quick
    args.trajectories = args.trajectories or (2 if quick else 4)
    args.frames = args.frames or (24 if quick else 40)
    args.repeats = args.repeats or (3 if quick else 4)
    args.vrmse_epochs = (0 if quick else 3) if args.vrmse_epochs is None else args.vrmse_epochs
    common.set_threads(args.threads)
    device = select_device("auto")
    grid = (args.grid, args.grid)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        if args.data == "simulated":
            manifest = common.simulated_dataset(root, grid=args.grid, frames=args.frames, train=args.trajectories)
        else:
            manifest = common.synthetic_dataset(
                root, grid=args.grid, frames=args.frames, trajectories=args.trajectories
            )
        base_cfg, model_dir = common.published_size_base(grid, root / "base")
        with exact_fp32():  # h0 as the reference's fp32 base computes it
            data = common.stores_and_caches(manifest, root, base_cfg, model_dir)
        from irno.base import load_base

        base = load_base(base_cfg, model_dir, device)
        cfg = our_config(args)
        n = len(data["train"])
        batches = epoch_batches(n, args.batch, cfg.train.seed, 1)
        valid_batch = FirstSamples(data["valid"], args.batch)
        valid_windows = Subset(WellWindows(manifest, "valid"), range(len(valid_batch)))  # the same samples
        reference = ReferenceLoop(
            initial_phi(cfg, device), base, WellWindows(manifest, "train"), cfg, device, valid_windows
        )

        def ours():
            with tempfile.TemporaryDirectory(dir=root) as out:
                train_phi(cfg, data["train"], valid_batch, out)

        ours_loss, ref_loss = loss_check(cfg, data["train"], reference, batches[0], device)
        rel = abs(ours_loss - ref_loss) / abs(ref_loss)

        reference.epoch(batches[:1])  # warm-up: kernels, primitives and FFT plans for these shapes
        with tempfile.TemporaryDirectory(dir=root) as out:
            train_phi(cfg, FirstSamples(data["train"], args.batch), valid_batch, out)
        seconds = common.interleaved({"reference": lambda: reference.epoch(batches), "ours": ours}, args.repeats)
        rate = {name: n / min(s["wall"]) for name, s in seconds.items()}  # the best of the repeats
        median_rate = {name: n / float(np.median(s["wall"])) for name, s in seconds.items()}
        cpu_rate = {name: n / min(s["cpu"]) for name, s in seconds.items()}
        speedup = rate["ours"] / rate["reference"]

        part_batches = batches[: min(len(batches), 3 if quick else 6)]
        ref_parts, our_parts_ = common.Parts(), common.Parts()
        reference.epoch(part_batches, parts=ref_parts)
        our_parts(cfg, data["train"], part_batches, device, our_parts_)
        ref_clocks, our_clocks = ref_parts.median(), our_parts_.median()
        variants = phi_variants(cfg, data["train"], batches[0], device, args.repeats, quick)
        vrmse_rows, vrmse_heads = vrmse_check(args, data, device) if args.vrmse_epochs else ([], [])

    setting = f"{args.grid}^2, batch {args.batch}, {describe(cfg, device)}"
    rows = [
        {"part": "epoch", "variant": variant, "samples_per_s": rate[name], "median_samples_per_s": median_rate[name],
         "samples_per_cpu_s": cpu_rate[name], "all_epochs_s": np.round(seconds[name]["wall"], 2).tolist()}
        for name, variant in (("reference", "reference-style loop"), ("ours", "ours (irno.refinement.train.train_phi)"))
    ]  # fmt: skip
    for part in ("read", "base", "forward_backward", "step"):
        rows.append({"part": f"per batch: {part}", "variant": "reference-style loop", "seconds": ref_clocks[part]})
        if part in our_clocks:  # ours reads h0 from the cache with the batch
            rows.append({"part": f"per batch: {part}", "variant": "ours", "seconds": our_clocks[part]})
    rows += variants + vrmse_rows
    target = 3.0 if device.type == "cuda" else 2.0
    heads = [
        common.headline(f"training throughput, reference-style loop ({setting})", rate["reference"], "samples/s"),
        common.headline(f"training throughput, ours ({setting})", rate["ours"], "samples/s"),
        common.headline(
            "training speed-up, ours / reference (best epochs)", speedup, "x", f">= {target:g}x", speedup >= target
        ),
        common.headline("the same from median epochs", median_rate["ours"] / median_rate["reference"], "x"),
        common.headline(
            "the same in CPU time (less sensitive to other jobs)", cpu_rate["ours"] / cpu_rate["reference"], "x"
        ),
        common.headline("first-step loss, relative difference", rel, "", "<= 1e-5", rel <= 1e-5),
    ]
    if device.type == "cuda":
        heads.append(
            common.headline(
                "training throughput, ours (a fifth of one H100's bf16 bound)",
                rate["ours"],
                "samples/s",
                ">= 1000 at 256^2",
                rate["ours"] >= 1000,
            )
        )
    heads += vrmse_heads
    notes = [
        f"{n} training samples ({args.data} data, {args.trajectories} trajectories of {args.frames} frames), "
        f"{args.repeats} interleaved epochs of each loop, best kept; "
        f"first-batch loss ours {ours_loss:.8g}, reference {ref_loss:.8g}",
        "both are timed as whole epochs ending in a one-batch validation and a checkpoint written "
        "(ours: one-epoch train_phi calls, set-up and the epoch's files included)",
    ]
    result = common.report(NAME, args, rows, heads, notes)
    if rel > 1e-5:
        raise SystemExit(f"first-step losses differ by {rel:.3g} relative (ours {ours_loss}, reference {ref_loss})")
    return result


def describe(cfg: PhiConfig, device) -> str:
    tc = cfg.train
    if device.type != "cuda":
        return f"CPU fp32, {torch.get_num_threads()} threads"
    return "CUDA" + ", bf16" * tc.bf16 + ", channels_last" * tc.channels_last + ", compiled" * tc.compile


if __name__ == "__main__":
    main()
