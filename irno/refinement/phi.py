"""The refinement operator Phi and the IRNO iteration.

    h_0     = T_base(x)                        (frozen base operator, irno.base)
    h_{k+1} = h_k + alpha * Phi(cat[x, h_k])   (`refine_steps`: training, validation and
                                                evaluation all iterate through it)

Phi is a U-Net (docs/method.md#phi) or, for the backbone ablation, a neuralop FNO with the same channels.
Both start near zero (small output layer), so early iterations stay close to the base.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from irno.config import NetworkConfig, PhiConfig
from irno.settings import from_dict


class ChannelLayerNorm(nn.LayerNorm):
    """nn.LayerNorm over the channels of each pixel of a (B, C, H, W) tensor: the reference's norm.

    It normalises the channels-last view of x, which is free when x is channels_last (the layout
    Phi trains in on CPU) and one copy otherwise; the output is channels_last either way. On CPU
    this is ~10x faster than a var_mean over dim 1 of a channels-first tensor (benchmarks/README.md).
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__(num_channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)  # (B, H, W, C) view -> (B, C, H, W)


class _CircularPad(torch.autograd.Function):
    """Periodic padding of the last two axes of (B, C, H, W) by (ph, pw), in one copy each way.

    F.pad(mode="circular") is a chain of slice copies that autograd records one by one; its
    backward fills a zero tensor per slice, a third of a CPU training step of Phi at 64^2.
    Here the forward writes the padded tensor once, and the backward folds the border gradients
    back onto the interior. The input's memory format is kept.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, ph: int, pw: int) -> torch.Tensor:
        B, C, H, W = x.shape
        ctx.pad = ph, pw
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        out = torch.empty((B, C, H + 2 * ph, W + 2 * pw), dtype=x.dtype, device=x.device, memory_format=layout)
        out[..., ph : ph + H, pw : pw + W] = x
        out[..., :ph, pw : pw + W] = x[..., H - ph :, :]  # top border: the last rows
        out[..., ph + H :, pw : pw + W] = x[..., :ph, :]  # bottom border: the first rows
        out[..., :pw] = out[..., W : W + pw]  # left border (corners included): the last columns
        out[..., pw + W :] = out[..., pw : 2 * pw]  # right border: the first columns
        return out  # (B, C, H + 2 ph, W + 2 pw)

    @staticmethod
    @once_differentiable
    def backward(ctx, g: torch.Tensor):
        ph, pw = ctx.pad
        H, W = g.shape[-2] - 2 * ph, g.shape[-1] - 2 * pw
        # Fold the border rows onto the interior rows (corner columns included), then the border
        # columns onto the interior columns: 6 ops, where per-op overhead dominates below 64^2.
        g_rows = g[..., ph : ph + H, :].clone(memory_format=torch.preserve_format)  # (B, C, H, W + 2 pw)
        g_rows[..., H - ph :, :] += g[..., :ph, :]  # the top border came from the last rows
        g_rows[..., :ph, :] += g[..., ph + H :, :]  # the bottom border from the first rows
        gx = g_rows[..., pw : pw + W].clone(memory_format=torch.preserve_format)  # (B, C, H, W)
        gx[..., W - pw :] += g_rows[..., :pw]
        gx[..., :pw] += g_rows[..., pw + W :]
        return gx, None, None


def circular_pad(x: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
    """F.pad(x, (pw, pw, ph, ph), mode="circular") for (B, C, H, W) x, padding (ph, pw) <= (H, W), faster."""
    return _CircularPad.apply(x, *padding)


class PaddedConv2d(nn.Conv2d):
    """nn.Conv2d (same arguments, parameters and state dict) whose circular padding is `circular_pad`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.convolve(x, self.weight, self.bias)

    def convolve(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """This layer's convolution with `weight` and `bias` (all of its own, or a share of its input channels)."""
        if self.padding_mode == "circular":  # one copy each way, where torch's padding records a chain of slices
            return F.conv2d(circular_pad(x, self.padding), weight, bias, self.stride, 0, self.dilation, self.groups)
        return F.conv2d(x, weight, bias, self.stride, self.padding, self.dilation, self.groups)


def make_norm(kind: str, channels: int, num_groups: int = 8) -> nn.Module:
    if kind == "layer":
        return ChannelLayerNorm(channels)
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        groups = num_groups
        while groups > 1 and channels % groups:
            groups //= 2
        return nn.GroupNorm(groups, channels)
    raise ValueError(f"unknown norm '{kind}' (expected layer, batch or group)")


class ConvBlock(nn.Sequential):
    """Two times [3x3 conv, norm, GELU]."""

    def __init__(self, in_ch: int, out_ch: int, padding: str, norm: str, num_groups: int):
        conv = dict(kernel_size=3, padding=1, padding_mode=padding)
        super().__init__(
            PaddedConv2d(in_ch, out_ch, **conv),
            make_norm(norm, out_ch, num_groups),
            nn.GELU(),
            PaddedConv2d(out_ch, out_ch, **conv),
            make_norm(norm, out_ch, num_groups),
            nn.GELU(),
        )

    def after_first_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The block from its first norm on (for a first convolution computed elsewhere)."""
        for layer in list(self)[1:]:
            x = layer(x)
        return x


def upsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear x2 up-sampling of (B, C, h, w) -> (B, C, 2h, 2w)."""
    if mode == "align_corners":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    if mode == "periodic":
        # Interpolate across the periodic boundary: wrap one cell, up-sample, crop it off again.
        x = circular_pad(x, (1, 1))  # (B, C, h + 2, w + 2)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return x[..., 2:-2, 2:-2]
    raise ValueError(f"unknown up-sampling '{mode}' (expected align_corners or periodic)")


class UpConv(nn.Module):
    """Bilinear x2 up-sampling, then a 3x3 conv that halves the width."""

    def __init__(self, in_ch: int, out_ch: int, padding: str, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.conv = PaddedConv2d(in_ch, out_ch, kernel_size=3, padding=1, padding_mode=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample2x(x, self.upsample))


class UNetPhi(nn.Module):
    """U-Net Phi: (B, in_channels, H, W) -> (B, out_channels, H, W); H, W divisible by 2^depth."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        base_channels: int = 16,
        depth: int = 4,
        padding: str = "circular",
        norm: str = "layer",
        num_groups: int = 8,
        upsample: str = "align_corners",
    ):
        super().__init__()
        widths = [base_channels * 2**i for i in range(depth)]  # 16, 32, 64, 128
        block = dict(padding=padding, norm=norm, num_groups=num_groups)
        self.depth = depth
        self.encoders = nn.ModuleList(
            ConvBlock(c_in, c_out, **block) for c_in, c_out in zip([in_channels] + widths[:-1], widths)
        )
        self.bottleneck = ConvBlock(widths[-1], 2 * widths[-1], **block)  # 128 -> 256
        self.upconvs = nn.ModuleList(UpConv(2 * w, w, padding, upsample) for w in reversed(widths))
        self.decoders = nn.ModuleList(ConvBlock(2 * w, w, **block) for w in reversed(widths))
        self.output = nn.Conv2d(base_channels, out_channels, kernel_size=1)
        # Small output layer: Phi starts near zero, so h_k starts near the base prediction.
        nn.init.xavier_uniform_(self.output.weight, gain=0.1)
        nn.init.zeros_(self.output.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._after_first_conv(self.encoders[0][0](x))

    def conditioned(self, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """h -> Phi(cat[x, h]) for a fixed x (B, T*F, H, W)."""
        # A convolution is linear in its input channels: x's share of the first one is computed
        # once for all the h it is applied to (the K refinement steps), not once per step.
        conv, n = self.encoders[0][0], x.shape[1]
        x_share = conv.convolve(x, conv.weight[:, :n], conv.bias)  # (B, widths[0], H, W)
        return lambda h: self._after_first_conv(x_share + conv.convolve(h, conv.weight[:, n:], None))

    def _after_first_conv(self, x: torch.Tensor) -> torch.Tensor:
        """The U-Net from the first block's first norm on: (B, widths[0], H, W) -> (B, out_channels, H, W)."""
        H, W = x.shape[-2:]
        if H % 2**self.depth or W % 2**self.depth:
            raise ValueError(f"U-Net Phi of depth {self.depth} needs H, W divisible by {2**self.depth}, got {H}x{W}")
        skips = []
        for i, encoder in enumerate(self.encoders):
            x = encoder(x) if i else encoder.after_first_conv(x)  # (B, w, H / 2^i, W / 2^i)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)  # (B, 2 w_last, H / 2^depth, W / 2^depth)
        for upconv, decoder, skip in zip(self.upconvs, self.decoders, reversed(skips)):
            x = upconv(x)  # (B, w, ...) at the skip's resolution
            x = decoder(torch.cat([x, skip], dim=1))  # (B, 2w, ...) -> (B, w, ...)
        return self.output(x)  # (B, out_channels, H, W)


class FNOPhi(nn.Module):
    """Phi as a neuralop FNO with the same channels (the paper's backbone ablation)."""

    def __init__(
        self, in_channels: int, out_channels: int, modes: int = 16, hidden_channels: int = 32, n_layers: int = 4
    ):
        super().__init__()
        from neuralop.models import FNO

        self.fno = FNO(
            n_modes=(modes, modes),
            hidden_channels=hidden_channels,
            in_channels=in_channels,
            out_channels=out_channels,
            n_layers=n_layers,
        )
        last = self.fno.projection.fcs[-1]  # as for the U-Net: start near zero
        nn.init.xavier_uniform_(last.weight, gain=0.1)
        nn.init.zeros_(last.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fno(x)


def build_phi(cfg: NetworkConfig, in_channels: int, out_channels: int) -> nn.Module:
    """Phi for `cfg`: in_channels = input channels + fields (e.g. 44 + 11 = 55), out = fields."""
    if cfg.backbone == "unet":
        return UNetPhi(
            in_channels, out_channels, cfg.base_channels, cfg.depth, cfg.padding, cfg.norm, cfg.num_groups, cfg.upsample
        )
    if cfg.backbone == "fno":
        return FNOPhi(in_channels, out_channels, cfg.fno_modes, cfg.fno_hidden_channels, cfg.fno_layers)
    raise ValueError(f"unknown Phi backbone '{cfg.backbone}'")


def phi_memory_format(cfg: NetworkConfig, channels_last: bool = True) -> torch.memory_format:
    """The memory format of Phi's inputs: channels_last for the U-Net where asked (the default).

    The U-Net's LayerNorm normalises a channels-last view, and mkldnn (CPU) and cuDNN (GPU) run its
    convolutions natively in channels_last. neuralop's FNO is slower in it, so it stays channels-first.
    """
    return torch.channels_last if channels_last and cfg.backbone == "unet" else torch.contiguous_format


def conditioned(phi: nn.Module, x: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """h -> Phi(cat[x, h]) for a fixed x (B, T*F, H, W), the map every refinement step applies.

    The U-Net computes x's share of its first convolution once (`UNetPhi.conditioned`);
    other Phis (the FNO backbone, a compiled Phi) see the concatenation (B, T*F + F, H, W).
    """
    # isinstance, not hasattr: a compiled U-Net passes attribute lookups to the uncompiled one.
    if isinstance(phi, UNetPhi):
        return phi.conditioned(x)
    return lambda h: phi(torch.cat([x, h], dim=1))


def refine_steps(
    phi: nn.Module, x: torch.Tensor, h0: torch.Tensor, alpha: float, n_steps: int
) -> Iterator[torch.Tensor]:
    """Yield h_1 .. h_n from h_0, h_{k+1} = h_k + alpha * Phi(cat[x, h_k]); h (B, F, H, W).

    Gradients flow through the chain unless called under no_grad.
    """
    phi_x = conditioned(phi, x)
    h = h0
    for _ in range(n_steps):
        h = h + alpha * phi_x(h)
        yield h


def load_phi(path, device: torch.device | str = "cpu") -> tuple[nn.Module, PhiConfig, dict]:
    """Phi from a trained `checkpoint.pt` (docs/outputs.md), in eval mode, with its config."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    cfg = from_dict(PhiConfig, ckpt["config"], "")
    phi = build_phi(cfg.network, ckpt["in_channels"], ckpt["out_channels"])
    phi.load_state_dict(ckpt["model"])
    return phi.to(device).eval(), cfg, ckpt
