"""Neural operators on graphs, as the reference builds them, in torch: ROMA and the paper's baselines.

Each reads every node's history through random input functions, makes a branch output b per
token and decodes it with the token's features z into u in R^o; the prediction is ||u||.

    DeepONet                residual-MLP branch per node, no graph               DeepONet decoder
    MessagePassingDeepONet  Euclidean message passing -> z, Transformer branch   DeepONet decoder
    MessagePassingNomad     the same                                             NOMAD decoder
    Roma                    message passing on the Poincare ball, renormalisation, multiscale
                            Transformer with index, level and context embeddings DeepONet decoder

`build_model` builds a ModelConfig's kind; shapes and the reference's conventions: docs/roma.md, "Models".
"""

from __future__ import annotations

import abc
import functools
import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as fn
from torch import nn
from torch.func import jacfwd, vmap

from irno.roma.settings import ModelConfig

_MIN_NORM = 1e-15
_BALL_EPS = 1e-5  # points stay within (1 - eps) / sqrt(c) of the centre


def gelu(x: torch.Tensor) -> torch.Tensor:
    return fn.gelu(x, approximate="tanh")  # jax's default


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(pairwise(dims)):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.GELU(approximate="tanh"))
    return nn.Sequential(*layers)


class FrozenLinear(nn.Module):
    """A linear map fixed at nn.Linear's random initialisation (buffers: saved, not trained)."""

    def __init__(self, d_in: int, d_out: int):
        super().__init__()
        layer = nn.Linear(d_in, d_out)
        self.register_buffer("weight", layer.weight.detach())
        self.register_buffer("bias", layer.bias.detach())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fn.linear(x, self.weight, self.bias)


def skip(d_in: int, d_out: int, frozen: bool) -> nn.Module:
    return FrozenLinear(d_in, d_out) if frozen else nn.Linear(d_in, d_out)


# ----------------------------------------------------------------------------- the Poincare ball


class Ball:
    """Maps of the Poincare ball of curvature -c (points of norm < 1 / sqrt(c)); c = None: Euclidean."""

    def __init__(self, c: float | None):
        self.c = c

    @property
    def euclidean(self) -> bool:
        return self.c is None

    def proj(self, x: torch.Tensor) -> torch.Tensor:
        if self.euclidean:
            return x
        norm = x.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
        limit = (1 - _BALL_EPS) / math.sqrt(self.c)
        return torch.where(norm > limit, x / norm * limit, x)

    def exp0(self, v: torch.Tensor) -> torch.Tensor:
        """Tangent vector at 0 -> point on the ball (projected inside)."""
        if self.euclidean:
            return v
        sqrt_c = math.sqrt(self.c)
        norm = v.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
        return self.proj(_tanh(sqrt_c * norm) * v / (sqrt_c * norm))

    def log0(self, x: torch.Tensor) -> torch.Tensor:
        """Point on the ball -> tangent vector at 0."""
        if self.euclidean:
            return x
        sqrt_c = math.sqrt(self.c)
        norm = x.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
        return _artanh(sqrt_c * norm) * x / (sqrt_c * norm)

    def mobius_add(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.euclidean:
            return x + y
        c = self.c
        x2, y2, xy = x.square().sum(-1, keepdim=True), y.square().sum(-1, keepdim=True), (x * y).sum(-1, keepdim=True)
        numerator = (1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y
        return numerator / (1 + 2 * c * xy + c**2 * x2 * y2).clamp_min(_MIN_NORM)

    def linear(self, x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
        """Mobius matrix-vector product, then Mobius addition of the bias mapped onto the ball."""
        if self.euclidean:
            return layer(x)
        sqrt_c = math.sqrt(self.c)
        x_norm = x.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
        mx = x @ layer.weight.T
        mx_norm = mx.norm(dim=-1, keepdim=True).clamp_min(_MIN_NORM)
        out = _tanh(mx_norm / x_norm * _artanh(sqrt_c * x_norm)) * mx / (mx_norm * sqrt_c)
        out = self.proj(torch.where((mx == 0).all(-1, keepdim=True), torch.zeros_like(out), out))
        return self.proj(self.mobius_add(out, self.exp0(layer.bias)))

    def pairwise_sqdist(self, x: torch.Tensor) -> torch.Tensor:
        """(B, n, d) points -> (B, n, n) squared geodesic distances (Euclidean: squared distances)."""
        gram = x @ x.transpose(-1, -2)
        sq = gram.diagonal(dim1=-2, dim2=-1)
        x2, y2 = sq[..., :, None], sq[..., None, :]
        if self.euclidean:
            return (x2 + y2 - 2 * gram).clamp_min(0)
        c = self.c
        # |(-x) (+) y|: Mobius addition's norm from inner products only
        a, b = 1 - 2 * c * gram + c * y2, 1 - c * x2
        numerator = (a.square() * x2 - 2 * a * b * gram + b.square() * y2).clamp_min(0)
        denominator = (1 - 2 * c * gram + c**2 * x2 * y2).clamp_min(_MIN_NORM)
        norm = numerator.clamp_min(_MIN_NORM).sqrt() / denominator
        return (2 / math.sqrt(c) * _artanh(math.sqrt(c) * norm)).square()


def _tanh(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x.clamp(-15, 15))


def _artanh(x: torch.Tensor) -> torch.Tensor:
    return torch.atanh(x.clamp(-1 + 1e-7, 1 - 1e-7))


# ----------------------------------------------------------------------------- message passing


class GraphLayer(nn.Module):
    """HGCN layer: Mobius linear, edge MLP, sum/mean/var/max aggregation MLP, GELU (docs/roma.md, "Models")."""

    def __init__(self, d_in: int, d_out: int, ball: Ball, edge_mlp: bool):
        super().__init__()
        self.ball = ball
        self.linear = nn.Linear(d_in, d_out)
        self.edge = mlp([2 * d_out, 4 * d_out, 4 * d_out, d_out]) if edge_mlp else None
        self.aggregate = mlp([4 * d_out, 4 * d_out, 4 * d_out, d_out])

    def forward(self, x: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        """x (B, n, d_in) points, edges (2, E) senders and receivers -> (B, n, d_out) points."""
        ball = self.ball
        t = ball.log0(ball.linear(x, self.linear))  # (B, n, d)
        sender, receiver = edges
        message = t[:, sender]
        if self.edge is not None:
            message = self.edge(torch.cat([t[:, receiver], message - t[:, receiver]], dim=-1))  # (B, E, d)
        h = self.aggregate(segment_statistics(message, receiver, t.shape[1]))  # (B, n, d)
        h = ball.exp0(h)
        return ball.exp0(gelu(ball.log0(h)))


def segment_statistics(message: torch.Tensor, receiver: torch.Tensor, n: int) -> torch.Tensor:
    """(B, E, d) messages -> (B, n, 4d): their sum, mean, (population) variance and maximum per receiver."""
    B, _, d = message.shape
    index = receiver.view(1, -1, 1).expand_as(message)
    count = torch.zeros(n, device=message.device, dtype=message.dtype).index_add_(
        0, receiver, torch.ones_like(receiver, dtype=message.dtype)
    )
    count = count.clamp_min(1).view(1, n, 1)
    total = message.new_zeros(B, n, d).scatter_add(1, index, message)
    mean = total / count
    deviation = message - mean.gather(1, index)
    variance = message.new_zeros(B, n, d).scatter_add(1, index, deviation.square()) / count
    maximum = message.new_full((B, n, d), -torch.inf).scatter_reduce(1, index, message, "amax")
    return torch.cat([total, mean, variance, maximum], dim=-1)


class GraphNet(nn.Module):
    """HGCN layers with linear skips: v <- skip(v) + log(layer(exp(v))), in the tangent space."""

    def __init__(self, dims: list[int], ball: Ball, edge_mlp: bool, frozen_skips: bool):
        super().__init__()
        self.ball = ball
        self.layers = nn.ModuleList(GraphLayer(a, b, ball, edge_mlp) for a, b in pairwise(dims))
        self.skips = nn.ModuleList(skip(a, b, frozen_skips) for a, b in pairwise(dims))

    def forward(self, v: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
        x = self.ball.exp0(v)
        for layer, skip_map in zip(self.layers, self.skips, strict=True):
            v = skip_map(self.ball.log0(x)) + self.ball.log0(layer(x, edges))
            x = self.ball.exp0(v)
        return v


class ResNet(nn.Module):
    """x <- LN(GELU(W x + b)) + skip(x) through dims[0] -> ... -> dims[-1] (the reference's Res)."""

    def __init__(self, dims: list[int], frozen_skips: bool):
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))
        self.norms = nn.ModuleList(nn.LayerNorm(b) for b in dims[1:])
        self.skips = nn.ModuleList(skip(a, b, frozen_skips) for a, b in pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer, norm, skip_map in zip(self.layers, self.norms, self.skips, strict=True):
            x = layer_norm(gelu(layer(x)), norm) + skip_map(x)
        return x


def layer_norm(x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """`norm`(x) from elementary operations: under nested forward-mode autodiff (the learned PDE's
    derivatives) torch's fused layer norm falls back to a slow Python decomposition."""
    mean = x.mean(-1, keepdim=True)
    centred = x - mean
    variance = centred.square().mean(-1, keepdim=True)
    return centred * torch.rsqrt(variance + norm.eps) * norm.weight + norm.bias


# ----------------------------------------------------------------------------- renormalisation


@dataclass
class Renormalised:
    assignment: torch.Tensor  # (B, n, m) S, columns sum to 1
    history: torch.Tensor  # (B, m, k) coarse tokens' histories
    features: torch.Tensor  # (B, m, e) coarse tokens' features
    adjacency: torch.Tensor  # (B, m, m) S^T A S
    losses: torch.Tensor  # (3,) entropy of S, entropy of A', Fermi-Dirac link loss


class Renormalisation(nn.Module):
    """One learned coarse-graining of the n fine nodes into m (docs/roma.md, "Models")."""

    def __init__(self, width: int, coarse_nodes: int, ball: Ball, edge_mlp: bool, frozen_skips: bool, fermi_dirac):
        super().__init__()
        self.ball = ball
        self.pool = GraphNet([width, coarse_nodes], ball, edge_mlp, frozen_skips)
        self.embed = GraphNet([width, width], ball, edge_mlp, frozen_skips)
        self.norm = nn.LayerNorm(coarse_nodes)
        self.fermi_dirac = nn.Parameter(torch.tensor(fermi_dirac, dtype=torch.float32))  # (r, t): learned

    def forward(self, u: torch.Tensor, h: torch.Tensor, edges: torch.Tensor, adj: torch.Tensor) -> Renormalised:
        """u (B, n, k), h (B, n, e) encoder features, edges (2, E), adj (n, n) dense 0/1 with self loops."""
        n = h.shape[1]
        s = self.norm(self.ball.log0(self.ball.exp0(self.pool(h, edges))))  # (B, n, m)
        assignment = (s / s.norm(dim=1, keepdim=True).clamp_min(_MIN_NORM)).square()
        embedded = self.ball.log0(self.ball.exp0(self.embed(h, edges)))  # (B, n, e)
        ratio = assignment.shape[-1] / n
        coarse_history = assignment.transpose(1, 2) @ u * ratio  # (B, m, k)
        coarse_features = assignment.transpose(1, 2) @ embedded * ratio  # (B, m, e)
        coarse_adj = assignment.transpose(1, 2) @ adj @ assignment  # (B, m, m)
        entropy = torch.special.entr(assignment).mean() * math.e
        coarse_entropy = torch.special.entr(coarse_adj).mean() * math.e
        losses = torch.stack([entropy, coarse_entropy, self.link_loss(h, adj)])
        return Renormalised(assignment, coarse_history, coarse_features, coarse_adj, losses)

    def link_loss(self, h: torch.Tensor, adj: torch.Tensor) -> torch.Tensor:
        """Fermi-Dirac link prediction on the encoder features: p_ij = sigmoid(-(d_ij^2 / e - exp r) /
        (exp t + 1e-5)) against A_ij over the pairs i <= j; the mean fourth power of the error on
        non-edges and on edges, averaged (the reference's weighting)."""
        x = self.ball.exp0(h)
        distance = self.ball.pairwise_sqdist(x) / x.shape[-1]  # (B, n, n)
        r, t = self.fermi_dirac
        p = torch.sigmoid(-(distance - r.exp()) / (t.exp() + 1e-5))
        upper = torch.ones_like(adj, dtype=torch.bool).triu()
        error4 = (adj - p).square().square()  # (B, n, n)
        edge, non_edge = upper & (adj > 0), upper & (adj == 0)
        per_window = (error4 * non_edge).sum((-2, -1)) / non_edge.sum().clamp_min(1) + (error4 * edge).sum(
            (-2, -1)
        ) / edge.sum().clamp_min(1)
        return (per_window / 2).mean()


# ----------------------------------------------------------------------------- branch networks


JITTER = 1e-13  # the reference's Cholesky factor of K + JITTER I: white noise of this variance on the grid


@functools.lru_cache(maxsize=8)
def _gaussian_process_basis(grid: int, length_scale: float) -> np.ndarray:
    """(grid, modes) V sqrt(lambda) of the RBF kernel on `grid` points of [0, 1]: f = basis @ xi,
    xi ~ N(0, 1), is a Gaussian-process sample (modes below 1e-12 of the largest dropped)."""
    x = np.linspace(0.0, 1.0, grid)
    kernel = np.exp(-0.5 * ((x[:, None] - x[None, :]) / length_scale) ** 2)
    # torch's solver: OpenBLAS's (numpy's) threads spin on a busy node, 50x slower here
    values, vectors = (a.numpy() for a in torch.linalg.eigh(torch.from_numpy(kernel).to("cpu")))
    keep = values > 1e-12 * values.max()
    return vectors[:, keep] * np.sqrt(values[keep])


@functools.lru_cache(maxsize=8)
def _spline_curvatures(grid: int) -> np.ndarray:
    """(grid, grid) M with C = M y: the coefficients C_i = S''(x_i) h^2 / 2 of the not-a-knot cubic
    spline S through values y on `grid` evenly spaced points of spacing h.

    Continuity of S' at the inner points: C_{i-1} + 4 C_i + C_{i+1} = 3 (y_{i+1} - 2 y_i + y_{i-1});
    not-a-knot (S's third derivative continuous at the second and the last but one point):
    C_0 - 2 C_1 + C_2 = 0, and the same at the other end. On [x_i, x_{i+1}], s = (x - x_i) / h:
    S = y_i + (y_{i+1} - y_i - (2 C_i + C_{i+1}) / 3) s + C_i s^2 + (C_{i+1} - C_i) / 3 s^3."""
    inner = np.arange(1, grid - 1)
    system, second_differences = np.zeros((grid, grid)), np.zeros((grid, grid))
    system[inner, inner - 1], system[inner, inner], system[inner, inner + 1] = 1.0, 4.0, 1.0
    second_differences[inner, inner - 1], second_differences[inner, inner] = 3.0, -6.0
    second_differences[inner, inner + 1] = 3.0
    system[0, :3] = system[-1, -3:] = [1.0, -2.0, 1.0]
    solve = torch.linalg.solve(torch.from_numpy(system).to("cpu"), torch.from_numpy(second_differences).to("cpu"))
    return solve.numpy()


class InputFunctions(nn.Module):
    """Each history value through `count` random functions f ~ GP(0, RBF(length_scale)), as the
    reference draws and evaluates them.

    Drawn on a grid of `grid` points of [0, 1] per window (fresh in every training step, fixed in
    evaluation), with the reference's white noise of variance JITTER on the grid values (its
    Cholesky factor of K + JITTER I); between grid points the not-a-knot cubic spline through them,
    and outside [0, 1] (inputs with noise can exceed 1) its end pieces continued, as the reference's
    spline does. Out there the cubic term amplifies the jitter: beyond about 1.1 the functions are
    far from smooth, in ours as in the reference's (docs/roma.md, "Remaining differences").

    ``layout``: ``node`` gives token i the values f_1(u_i), ..., f_F(u_i) (F k numbers);
    ``reference`` reproduces the reference's reshape of the (F, T, k) array into (T, F k), which
    gives token i the values of one or two functions on the histories of a block of F
    consecutive tokens (its own history only when it falls in that block).
    """

    def __init__(self, count: int, length_scale: float, grid: int, layout: str):
        super().__init__()
        self.count, self.layout = count, layout
        basis = torch.as_tensor(_gaussian_process_basis(grid, length_scale), dtype=torch.float32)
        self.register_buffer("basis", basis, persistent=False)  # (G, modes), fixed by the settings
        curvatures = torch.as_tensor(_spline_curvatures(grid), dtype=torch.float32)
        self.register_buffer("curvatures", curvatures, persistent=False)  # (G, G)

    def sample(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(batch, count, G) function values on the grid, the jitter included."""
        device = self.basis.device
        xi = torch.randn(batch, self.count, self.basis.shape[1], generator=generator, device=device)
        jitter = torch.randn(batch, self.count, self.basis.shape[0], generator=generator, device=device)
        return xi @ self.basis.T + math.sqrt(JITTER) * jitter

    def forward(self, u: torch.Tensor, functions: torch.Tensor) -> torch.Tensor:
        """u (B, T, k) values, functions (B, F, G) on the grid -> (B, T, F k)."""
        B, T, k = u.shape
        G = functions.shape[-1]
        curvature = functions @ self.curvatures.T  # (B, F, G): the spline's C at every grid point
        position = u.reshape(B, 1, T * k) * (G - 1)  # in grid steps
        left = position.floor().clamp(0, G - 2)  # the piece: outside [0, 1] the first or the last
        s = position - left  # in [0, 1) inside, beyond on the end pieces
        index = left.long().expand(B, self.count, T * k)
        y0, y1 = functions.gather(2, index), functions.gather(2, index + 1)  # (B, F, T k)
        c0, c1 = curvature.gather(2, index), curvature.gather(2, index + 1)
        values = y0 + (y1 - y0 - (2 * c0 + c1) / 3) * s + c0 * s**2 + (c1 - c0) / 3 * s**3
        values = values.view(B, self.count, T, k)
        if self.layout == "node":
            values = values.transpose(1, 2)
        return values.reshape(B, T, self.count * k)


class Attention(nn.Module):
    """Multi-head self-attention without biases; heads of width // heads channels."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads, self.head_dim = heads, width // heads
        inner = heads * self.head_dim
        self.query, self.key, self.value = (nn.Linear(width, inner, bias=False) for _ in range(3))
        self.out = nn.Linear(inner, width, bias=False)

    def forward(self, x: torch.Tensor, weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = x.shape
        q, k, v = (
            proj(x).view(B, T, self.heads, self.head_dim).transpose(1, 2) for proj in (self.query, self.key, self.value)
        )
        if weights:
            attention = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)  # (B, h, T, T)
            y = attention @ v
        else:
            attention, y = None, fn.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(B, T, -1)), attention


class Block(nn.Module):
    """Pre-norm Transformer block: x + Attention(LN(x)), then x + MLP(LN(x)) with a 4x hidden layer."""

    def __init__(self, width: int, heads: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.attention = Attention(width, heads)
        self.up, self.down = nn.Linear(width, 4 * width), nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor, weights: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        y, attention = self.attention(self.norm1(x), weights)
        x = x + y
        return x + self.down(gelu(self.up(self.norm2(x)))), attention


class Transformer(nn.Module):
    """Tokens (B, T, d_in) + index, level (and context) embeddings -> Linear -> blocks -> LN -> Linear."""

    def __init__(self, cfg: ModelConfig, d_in: int, d_out: int, fine: int, coarse: int):
        super().__init__()
        roma = cfg.kind == "roma"
        self.fine = fine
        self.index_scale = cfg.index_embedding if roma else [1.0, 1.0]
        self.level_scale = cfg.level_embedding if roma else 0.0
        self.index_embedding = nn.Parameter(torch.randn(fine + coarse, d_in))  # one per token slot
        levels = 2 if coarse else 1
        self.level_embedding = nn.Parameter(torch.randn(levels, d_in)) if self.level_scale else None
        self.lin_in = nn.Linear(d_in, cfg.width)
        self.blocks = nn.ModuleList(Block(cfg.width, cfg.heads) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.width)
        self.lin_out = nn.Linear(cfg.width, d_out)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, attention: bool = False):
        """x (B, T, d_in) -> ((B, T, d_out), last block's attention (B, heads, T, T) or None)."""
        T = x.shape[1]
        scale = torch.full((T, 1), self.index_scale[1], device=x.device, dtype=x.dtype)
        scale[: self.fine] = self.index_scale[0]
        x = x + self.index_embedding[:T] * scale
        if self.level_embedding is not None:
            level = (torch.arange(T, device=x.device) >= self.fine).long()
            x = x + self.level_embedding[level] * self.level_scale
        if context is not None:
            x = x + context
        h = self.lin_in(x)
        weights = None
        for i, block in enumerate(self.blocks):
            h, weights = block(h, weights=attention and i == len(self.blocks) - 1)
        return self.lin_out(self.norm(h)), weights


# ----------------------------------------------------------------------------- decoders and the learned PDE


class Decoder(nn.Module):
    """DeepONet's decoder, per token: u(t, x) = b^T trunk([phi, z]) / p, with b the token's branch
    output as p x o, z its features and phi = [sin, cos]((t, x) B) Fourier features (B fixed);
    and the learned PDE's residual, DeepONets of their own on the same branch output."""

    def __init__(self, cfg: ModelConfig, features: int):
        super().__init__()
        self.cfg = cfg
        p, o, c = cfg.basis, cfg.outputs, cfg.fourier_features
        scales = torch.tensor([cfg.time_scale] + [cfg.space_scale] * o).view(-1, 1)
        self.register_buffer("fourier", scales * torch.randn(1 + o, c // 2))  # B: fixed, not trained
        hidden = [2 * cfg.width] * (cfg.depth + 1)
        trunk_in, trunk_out = self.trunk_sizes(cfg, features)
        self.trunk = ResNet([trunk_in, *hidden, trunk_out], cfg.frozen_skips)
        self.pde_trunks = nn.ModuleList()
        if cfg.learned_pde:
            pde_in = c + features + (2 * o + o * o if cfg.pde == "emergent" else 0)  # + u, du/dx, lap u
            count = 1 if cfg.pde == "emergent" else 2  # F; or F and v
            self.pde_trunks.extend(ResNet([pde_in, *hidden, p], cfg.frozen_skips) for _ in range(count))

    @staticmethod
    def trunk_sizes(cfg: ModelConfig, features: int) -> tuple[int, int]:
        """The trunk's input and output widths: [phi, z] -> the basis."""
        return cfg.fourier_features + features, cfg.basis

    def features_of(self, tx: torch.Tensor) -> torch.Tensor:
        x = tx @ self.fourier
        return torch.cat([torch.sin(x), torch.cos(x)], dim=-1)

    def forward(self, tx: torch.Tensor, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """tx (N, 1 + o), z (N, e), b (N, p o) of N tokens -> u (N, o)."""
        phi = self.features_of(tx)  # (N, c)
        basis = b.view(b.shape[0], -1, self.cfg.outputs)  # (N, p, o)
        return (basis * self.trunk(torch.cat([phi, z], dim=-1))[..., None]).sum(1) / self.cfg.basis

    def residual(self, tx, z, b, u, jacobian, laplacian) -> torch.Tensor:
        """r (N, o) from u (N, o), jacobian (N, o, 1 + o) = [du/dt, du/dx] and laplacian (N, o)."""
        phi = self.features_of(tx)
        basis = b.view(b.shape[0], -1, self.cfg.outputs)  # (N, p, o)

        def learned(trunk, inputs):  # a DeepONet on the shared branch: one number per token
            return (basis * trunk(inputs)[..., None]).sum((1, 2)).unsqueeze(-1) / b.shape[-1]  # (N, 1)

        du_dt, du_dx = jacobian[..., 0], jacobian[..., 1:]
        if self.cfg.pde == "emergent":
            inputs = torch.cat([phi, z, u, du_dx.flatten(1), laplacian], dim=-1)
            return du_dt - learned(self.pde_trunks[0], inputs)
        inputs = torch.cat([phi, z], dim=-1)
        F, v = learned(self.pde_trunks[0], inputs), learned(self.pde_trunks[1], inputs)
        return du_dt + F * (du_dx @ u[..., None]).squeeze(-1) - v * laplacian

    def with_pde(self, tx: torch.Tensor, z: torch.Tensor, b: torch.Tensor):
        """u (N, o), the residual r (N, o) and its derivative in (t, x) (N, o, 1 + o), as the reference's
        `pde_res_grad`: u's jacobian and Laplacian by nested forward-mode autodiff per token, then
        the residual differentiated in its (t, x) argument alone, with u, its jacobian and its
        Laplacian held as values (so (t, x) acts through the PDE networks' Fourier features only).
        Gradients for the parameters still flow through all of them."""

        def derivatives(tx, z, b):  # one token: tx (1 + o,), z (e,), b (p o,)
            def value(tx):
                u = self(tx[None], z[None], b[None])[0]
                return u, u

            def first(tx):
                jacobian, u = jacfwd(value, has_aux=True)(tx)
                return jacobian, (jacobian, u)

            hessian, (jacobian, u) = jacfwd(first, has_aux=True)(tx)  # (o, 1 + o, 1 + o)
            return u, jacobian, hessian.diagonal(dim1=-2, dim2=-1)[:, 1:].sum(-1)  # (o,), (o, 1 + o), (o,)

        def residual(tx, z, b, u, jacobian, laplacian):  # one token; jacfwd differentiates tx only
            r = self.residual(tx[None], z[None], b[None], u[None], jacobian[None], laplacian[None])[0]
            return r, r

        u, jacobian, laplacian = vmap(derivatives)(tx, z, b)
        gradient, r = vmap(jacfwd(residual, has_aux=True))(tx, z, b, u, jacobian, laplacian)
        return u, r, gradient


class NomadDecoder(Decoder):
    """NOMAD's nonlinear decoder, per token: u(t, x) = trunk([phi, b, z]) / o, the branch output b an
    input of the trunk; the learned PDE as `Decoder`'s."""

    @staticmethod
    def trunk_sizes(cfg: ModelConfig, features: int) -> tuple[int, int]:
        """The trunk's input and output widths: [phi, b, z] -> u."""
        return cfg.fourier_features + features + cfg.basis * cfg.outputs, cfg.outputs

    def forward(self, tx: torch.Tensor, z: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """tx (N, 1 + o), z (N, e), b (N, p o) of N tokens -> u (N, o)."""
        phi = self.features_of(tx)  # (N, c)
        return self.trunk(torch.cat([phi, b, z], dim=-1)) / self.cfg.outputs


# ----------------------------------------------------------------------------- the operators


@dataclass
class Output:
    prediction: torch.Tensor  # (B, T) ||u|| of every token, fine nodes first
    num_fine: int
    renormalised: Renormalised | None = None  # roma
    pde_loss: torch.Tensor | None = None  # mean r^2 over the fine tokens (learned PDE)
    pde_gradient_loss: torch.Tensor | None = None  # mean (dr/d(t, x))^2 over the fine tokens
    attention: torch.Tensor | None = None  # (B, heads, T, T) the last Transformer block's

    @property
    def fine(self) -> torch.Tensor:
        return self.prediction[:, : self.num_fine]  # (B, n)

    @property
    def coarse(self) -> torch.Tensor:
        return self.prediction[:, self.num_fine :]  # (B, m)


@dataclass
class Tokens:
    """A batch's tokens as the branch and the decoder read them: the n fine nodes, then (ROMA) the
    m coarse ones."""

    history: torch.Tensor  # (B, T, k) u
    features: torch.Tensor  # (B, T, e) z: the encoder's features (e = 0 without an encoder)
    renormalised: Renormalised | None = None  # ROMA's coarse-graining


class GraphOperator(nn.Module, abc.ABC):
    """What the four model kinds share: a batch's tokens (`tokens`: the nodes, ROMA's coarse nodes
    after them) read their histories through random input functions, the branch makes one output
    b per token (`branch_output`), and the decoder turns each token's b and features z into u at
    the window's time; the prediction is ||u||. With ``pde`` the fine tokens' learned-PDE losses
    come with it. Build one with `build_model` (or `make_operator`, without the reference's
    initialisation)."""

    inputs: InputFunctions
    decoder: Decoder

    def __init__(self, cfg: ModelConfig, history: int):
        super().__init__()
        self.cfg = cfg
        self.history = history

    @abc.abstractmethod
    def tokens(self, history, edges, adjacency, encodings) -> Tokens:
        """The batch's tokens, from the arguments of `forward` (each kind reads what it needs)."""

    @abc.abstractmethod
    def branch_output(self, inputs: torch.Tensor, tokens: Tokens, attention: bool):
        """inputs (B, T, F k) -> (b (B, T, p o), the last block's attention (B, heads, T, T) or None)."""

    def forward(
        self,
        history: torch.Tensor,
        time: torch.Tensor,
        edges: torch.Tensor,
        adjacency: torch.Tensor | None = None,
        encodings: torch.Tensor | None = None,
        *,
        generator: torch.Generator | None = None,
        pde: bool = False,
        attention: bool = False,
    ) -> Output:
        """history (B, n, k) values, time (B,) absolute time of the last input frame, edges (2, E)
        of the subgraph with self loops, adjacency (n, n) dense 0/1 with self loops (roma),
        encodings (B, n, P); `generator` draws the input functions; `pde`: the learned-PDE losses."""
        B, n, _ = history.shape
        tokens = self.tokens(history, edges, adjacency, encodings)
        T = tokens.history.shape[1]
        inputs = self.inputs(tokens.history, self.inputs.sample(B, generator))  # (B, T, F k)
        b, weights = self.branch_output(inputs, tokens, attention)  # (B, T, p o)
        tx = torch.zeros(B, T, 1 + self.cfg.outputs, device=history.device, dtype=history.dtype)
        tx[..., 0] = time.view(B, 1)
        out = Output(
            prediction=history.new_zeros(B, T), num_fine=n, renormalised=tokens.renormalised, attention=weights
        )
        fine = [_tokens(a, 0, n) for a in (tx, tokens.features, b)]  # (B n, .) each
        if pde:
            value, r, gradient = self.decoder.with_pde(*fine)
            out.pde_loss, out.pde_gradient_loss = r.square().mean(), gradient.square().mean()
        else:
            value = self.decoder(*fine)
        prediction = [value.norm(dim=-1).view(B, n)]
        if T > n:  # the coarse tokens
            value = self.decoder(*(_tokens(a, n, T) for a in (tx, tokens.features, b)))
            prediction.append(value.norm(dim=-1).view(B, T - n))
        out.prediction = torch.cat(prediction, dim=1)  # (B, T)
        return out


def _input_functions(cfg: ModelConfig) -> InputFunctions:
    return InputFunctions(cfg.input_functions, cfg.function_length_scale, cfg.function_grid, cfg.function_layout)


class DeepONet(GraphOperator):
    """The DeepONet baseline: no graph. Each node's input functions go through a residual-MLP
    branch of their own; the DeepONet decoder reads the branch output alone (no features)."""

    def __init__(self, cfg: ModelConfig, history: int):
        super().__init__(cfg, history)
        self.inputs = _input_functions(cfg)
        hidden = [2 * cfg.width] * (cfg.depth + 1)
        self.branch = ResNet([cfg.input_functions * history, *hidden, cfg.basis * cfg.outputs], cfg.frozen_skips)
        self.decoder = Decoder(cfg, 0)

    def tokens(self, history, edges, adjacency, encodings) -> Tokens:
        B, n, _ = history.shape
        return Tokens(history, history.new_zeros(B, n, 0))

    def branch_output(self, inputs: torch.Tensor, tokens: Tokens, attention: bool):
        return self.branch(inputs), None


class MessagePassingDeepONet(GraphOperator):
    """The DeepONet + message passing baseline: one Euclidean message-passing layer (`GraphNet`)
    makes each node's features z from its history; a Transformer over the nodes' input functions,
    with index embeddings of scale 1, is the branch; the DeepONet decoder reads b and z."""

    decoder_class: type[Decoder] = Decoder

    def __init__(self, cfg: ModelConfig, history: int, subgraph_nodes: int):
        super().__init__(cfg, history)
        self.encoder = GraphNet([history, cfg.encoder_width], Ball(None), cfg.edge_mlp, cfg.frozen_skips)
        self.inputs = _input_functions(cfg)
        self.branch = Transformer(cfg, cfg.input_functions * history, cfg.basis * cfg.outputs, subgraph_nodes, 0)
        self.decoder = self.decoder_class(cfg, cfg.encoder_width)

    def tokens(self, history, edges, adjacency, encodings) -> Tokens:
        return Tokens(history, self.encoder(history, edges))  # z (B, n, e)

    def branch_output(self, inputs: torch.Tensor, tokens: Tokens, attention: bool):
        return self.branch(inputs, None, attention)


class MessagePassingNomad(MessagePassingDeepONet):
    """The NOMAD + message passing baseline: DeepONet + message passing with NOMAD's nonlinear
    decoder (`NomadDecoder`)."""

    decoder_class = NomadDecoder


class Roma(GraphOperator):
    """ROMA: one message-passing layer on the Poincare ball (``manifold``) reads each node's history
    and linearly embedded graph encodings into features z; a learned renormalisation coarse-grains
    the n nodes into m coarse tokens with their own histories and features; a Transformer over the
    n + m tokens' input functions, with index, level and context (LN(MLP(z))) embeddings, is the
    branch; the DeepONet decoder reads b and z of every token (only the fine tokens' PDE terms)."""

    def __init__(self, cfg: ModelConfig, history: int, subgraph_nodes: int, encoding_dim: int):
        super().__init__(cfg, history)
        ball = Ball(cfg.curvature if cfg.manifold == "poincare" else None)
        e = cfg.encoder_width
        self.encodings = nn.Linear(encoding_dim, cfg.encoding_width) if cfg.used_encodings else None
        encoder_in = history + (cfg.encoding_width if self.encodings is not None else 0)
        self.encoder = GraphNet([encoder_in, e], ball, cfg.edge_mlp, cfg.frozen_skips)
        self.renormalisation = Renormalisation(
            e, cfg.coarse_nodes, ball, cfg.edge_mlp, cfg.frozen_skips, cfg.fermi_dirac
        )
        self.inputs = _input_functions(cfg)
        d_branch = cfg.input_functions * history
        self.branch = Transformer(cfg, d_branch, cfg.basis * cfg.outputs, subgraph_nodes, cfg.coarse_nodes)
        self.context = None
        if cfg.context_embedding:
            self.context = nn.Sequential(mlp([e, 4 * e, 4 * e, d_branch]), nn.LayerNorm(d_branch))
        self.decoder = Decoder(cfg, e)

    def tokens(self, history, edges, adjacency, encodings) -> Tokens:
        x = history if self.encodings is None else torch.cat([history, self.encodings(encodings)], dim=-1)
        z = self.encoder(x, edges)  # (B, n, e)
        renormalised = self.renormalisation(history, z, edges, adjacency)
        u = torch.cat([history, renormalised.history], dim=1)  # (B, T, k)
        z = torch.cat([z, renormalised.features], dim=1)  # (B, T, e)
        return Tokens(u, z, renormalised)

    def branch_output(self, inputs: torch.Tensor, tokens: Tokens, attention: bool):
        context = self.context(tokens.features) if self.context is not None else None
        return self.branch(inputs, context, attention)


def make_operator(cfg: ModelConfig, history: int, subgraph_nodes: int, encoding_dim: int = 0) -> GraphOperator:
    """The operator of ``cfg.kind`` for histories of `history` frames on subgraphs of `subgraph_nodes`
    nodes (`encoding_dim`: the graph encodings' total dimension), under torch's default
    initialisation; `build_model` gives the reference's."""
    if cfg.kind == "deeponet":
        return DeepONet(cfg, history)
    if cfg.kind == "deeponet_mp":
        return MessagePassingDeepONet(cfg, history, subgraph_nodes)
    if cfg.kind == "nomad_mp":
        return MessagePassingNomad(cfg, history, subgraph_nodes)
    return Roma(cfg, history, subgraph_nodes, encoding_dim)


def _tokens(a: torch.Tensor, start: int, stop: int) -> torch.Tensor:
    """(B, T, d) -> (B (stop - start), d): tokens start..stop of every window, one row each."""
    return a[:, start:stop].reshape(a.shape[0] * (stop - start), a.shape[-1])


def init_weights(model: nn.Module) -> None:
    """The reference's initialisation: every trainable linear map orthogonal (rows or columns
    orthonormal; widening maps scaled by sqrt(out / in)), biases zero."""
    for module in model.modules():
        if isinstance(module, nn.Linear) and not module.weight.is_meta:
            out_dim, in_dim = module.weight.shape
            with torch.no_grad():
                nn.init.orthogonal_(module.weight)
                if out_dim > in_dim:
                    module.weight.mul_(math.sqrt(out_dim / in_dim))
                if module.bias is not None:
                    module.bias.zero_()


def build_model(cfg: ModelConfig, history: int, subgraph_nodes: int, encoding_dim: int = 0) -> GraphOperator:
    """The model, initialised as the reference does (seed torch first for a reproducible draw)."""
    model = make_operator(cfg, history, subgraph_nodes, encoding_dim)
    init_weights(model)
    return model


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (fixed skips, the Fourier matrix and the function basis are not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def reference_parameter_count(model: GraphOperator) -> int:
    """The parameter count the reference reports for this configuration: ours plus what it builds
    and counts but never uses in a forward pass: each PDE network's own context MLP and
    LayerNorm, the context MLP of a model without context embedding (when it has an encoder), a
    linear map of the history to the encoding width and a (o -> 1) map of its PDE module, the
    level embedding when its scale is 0, a LayerNorm per message-passing network, and in the
    baselines the Fermi-Dirac (r, t), which the reference's model class holds whatever the kind."""
    cfg = model.cfg
    e = cfg.encoder_width if cfg.graph else 0
    d_branch = cfg.input_functions * model.history
    context = (e * 4 * e + 4 * e) + (4 * e * 4 * e + 4 * e) + (4 * e * d_branch + d_branch) + 2 * d_branch if e else 0
    unused = 0
    if cfg.learned_pde:
        unused += len(model.decoder.pde_trunks) * context + cfg.outputs + 1
    if not (isinstance(model, Roma) and model.context is not None):
        unused += context
    if cfg.used_encodings:
        unused += model.history * cfg.encoding_width + cfg.encoding_width
    if not isinstance(model, DeepONet) and model.branch.level_embedding is None:
        unused += 2 * d_branch  # its level embedding, scaled by 0
    if cfg.graph:
        unused += 2 * e  # the encoder's LayerNorm
    if isinstance(model, Roma):
        unused += 2 * cfg.coarse_nodes + 2 * e  # the pooling and embedding networks' LayerNorms
    else:
        unused += 2  # (r, t), ROMA's learned Fermi-Dirac parameters
    return count_parameters(model) + unused


# ----------------------------------------------------------------------------- a study's models


def parameter_counts(cfg, encoding_dim: int) -> tuple[int, int]:
    """(trained, as the reference counts them) parameters of a RunConfig's model, built without weights."""
    with torch.device("meta"):
        model = make_operator(cfg.model, cfg.train.history, cfg.train.subgraph_nodes, encoding_dim)
    return count_parameters(model), reference_parameter_count(model)
