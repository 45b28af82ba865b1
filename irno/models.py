"""The refinement operator Phi and the IRNO iteration.

    h_0     = T_base(x)                        (frozen base operator, irno.base)
    h_{k+1} = h_k + alpha * Phi(cat[x, h_k])   (`refine_step`; training, validation and
                                                evaluation all iterate through `refine_steps`)

Phi is a U-Net (SPEC 1.2) or, for the backbone ablation, a neuralop FNO with the same channels.
Both start near zero (small output layer), so early iterations stay close to the base.
"""

from __future__ import annotations

from typing import Iterator

import torch
import torch.nn as nn
import torch.nn.functional as F

from irno.config import PhiConfig, RefinerConfig, from_dict


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel of a (B, C, H, W) tensor, without permutes.

    Same parameters (weight, bias of shape (C,)) and the same result as permuting to channels
    last and applying nn.LayerNorm(C), the released reference's formulation.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var, mean = torch.var_mean(x, dim=1, keepdim=True, unbiased=False)  # (B, 1, H, W)
        x = (x - mean) * torch.rsqrt(var + self.eps)
        return x * self.weight[:, None, None] + self.bias[:, None, None]


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
            nn.Conv2d(in_ch, out_ch, **conv),
            make_norm(norm, out_ch, num_groups),
            nn.GELU(),
            nn.Conv2d(out_ch, out_ch, **conv),
            make_norm(norm, out_ch, num_groups),
            nn.GELU(),
        )


def upsample2x(x: torch.Tensor, mode: str) -> torch.Tensor:
    """Bilinear x2 up-sampling of (B, C, h, w) -> (B, C, 2h, 2w)."""
    if mode == "align_corners":
        return F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=True)
    if mode == "periodic":
        # Interpolate across the periodic boundary: wrap one cell, up-sample, crop it off again.
        x = F.pad(x, (1, 1, 1, 1), mode="circular")  # (B, C, h + 2, w + 2)
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        return x[..., 2:-2, 2:-2]
    raise ValueError(f"unknown up-sampling '{mode}' (expected align_corners or periodic)")


class UpConv(nn.Module):
    """Bilinear x2 up-sampling, then a 3x3 conv that halves the width."""

    def __init__(self, in_ch: int, out_ch: int, padding: str, upsample: str):
        super().__init__()
        self.upsample = upsample
        self.conv = nn.Conv2d(in_ch, out_ch, kernel_size=3, padding=1, padding_mode=padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(upsample2x(x, self.upsample))


class RefinementOperator(nn.Module):
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
        H, W = x.shape[-2:]
        if H % 2**self.depth or W % 2**self.depth:
            raise ValueError(f"U-Net Phi of depth {self.depth} needs H, W divisible by {2**self.depth}, got {H}x{W}")
        skips = []
        for encoder in self.encoders:
            x = encoder(x)  # (B, w, H / 2^i, W / 2^i)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottleneck(x)  # (B, 2 w_last, H / 2^depth, W / 2^depth)
        for upconv, decoder, skip in zip(self.upconvs, self.decoders, reversed(skips)):
            x = upconv(x)  # (B, w, ...) at the skip's resolution
            x = decoder(torch.cat([x, skip], dim=1))  # (B, 2w, ...) -> (B, w, ...)
        return self.output(x)  # (B, out_channels, H, W)


class FNORefinementOperator(nn.Module):
    """Phi as a neuralop FNO with the same channels (the paper's backbone ablation)."""

    def __init__(self, in_channels: int, out_channels: int, modes: int = 16, hidden_channels: int = 32, n_layers: int = 4):
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


def build_phi(cfg: PhiConfig, in_channels: int, out_channels: int) -> nn.Module:
    """Phi for `cfg`: in_channels = input channels + fields (e.g. 44 + 11 = 55), out = fields."""
    if cfg.backbone == "unet":
        return RefinementOperator(
            in_channels, out_channels, cfg.base_channels, cfg.depth, cfg.padding, cfg.norm, cfg.num_groups, cfg.upsample
        )
    if cfg.backbone == "fno":
        return FNORefinementOperator(in_channels, out_channels, cfg.fno_modes, cfg.fno_hidden_channels, cfg.fno_layers)
    raise ValueError(f"unknown Phi backbone '{cfg.backbone}'")


def refine_step(phi: nn.Module, x: torch.Tensor, h: torch.Tensor, alpha: float) -> torch.Tensor:
    """One IRNO step: h + alpha * Phi(cat[x, h]); x (B, T*F, H, W), h (B, F, H, W)."""
    return h + alpha * phi(torch.cat([x, h], dim=1))  # Phi sees (B, T*F + F, H, W)


def refine_steps(phi: nn.Module, x: torch.Tensor, h0: torch.Tensor, alpha: float, n_steps: int) -> Iterator[torch.Tensor]:
    """Yield h_1 .. h_n from h_0. Gradients flow through the chain unless called under no_grad."""
    h = h0
    for _ in range(n_steps):
        h = refine_step(phi, x, h, alpha)
        yield h


def load_refiner(path, device: torch.device | str = "cpu") -> tuple[nn.Module, RefinerConfig, dict]:
    """Phi from a trained `checkpoint.pt` (docs/outputs.md), in eval mode, with its config."""
    ckpt = torch.load(path, map_location=device, weights_only=True)
    cfg = from_dict(RefinerConfig, ckpt["config"], "")
    phi = build_phi(cfg.phi, ckpt["in_channels"], ckpt["out_channels"])
    phi.load_state_dict(ckpt["model"])
    return phi.to(device).eval(), cfg, ckpt
