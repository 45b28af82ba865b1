"""Neural operators on graphs: ROMA and the paper's baselines, in one composable module.

Every model maps a node's input features (its history, as the trainer encodes it, plus
positional encodings) on a subgraph to a function of the lead time, u_i(t) (the forecast's
increment, in units the trainer chooses):

    features (B, n, k), pe (B, n, P) -> embed             -> h (B, n, d)
    encoder: residual layers; with a graph, h <- h + MLP([h, A_norm h])   (message passing)
    roma only:
      renormalisation, level l: S = softmax_rows(GNN(h_l, A_l))           (B, n_l, m_l), rows sum to 1
                                h_{l+1} = S^T GNN(h_l) / S^T 1           (B, m_l, d)  weighted means
                                A_{l+1} = S^T A_l S                      (B, m_l, m_l) symmetric
      Transformer over the tokens [fine; coarse_1; coarse_2; ...] + level embeddings  (B, n + sum m, d)
    decoder, per token and lead time t in (0, 1]:
      coordinates xi = Linear(h)                                        (B, T, c)
      trunk input phi = [cos, sin](2 pi B (t, xi))                      (B, T, H, F), B fixed ~ N(0, s^2)
      DeepONet: u = <branch(h), trunk(phi)> / p + bias                 (B, T, H)
      NOMAD:    u = MLP([branch(h), phi])
    learned PDE (effective dynamics): residual du/dt - F(phi, u, grad_xi u, lap_xi u), by autograd

Kinds: ``deeponet`` (no graph: the encoder's layers see only the node itself), ``deeponet_mp``,
``nomad_mp`` (message passing), ``roma``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from irno.roma.config import ModelConfig


def mlp(dims: list[int]) -> nn.Sequential:
    """Linear layers with GELU between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(dims) - 2:
            layers.append(nn.GELU())
    return nn.Sequential(*layers)


def normalised_adjacency(adj: torch.Tensor) -> torch.Tensor:
    """D^-1/2 (A + I) D^-1/2 of a batch of weighted adjacencies (B, n, n): the GCN propagation."""
    a = adj + torch.eye(adj.shape[-1], dtype=adj.dtype, device=adj.device)
    inv_sqrt = a.sum(-1).clamp_min(1e-12).rsqrt()  # (B, n)
    return inv_sqrt[..., :, None] * a * inv_sqrt[..., None, :]


class NodeLayer(nn.Module):
    """Pre-norm residual layer: h + MLP([h, A_norm h]) with a graph, h + MLP(h) without."""

    def __init__(self, width: int, graph: bool):
        super().__init__()
        self.graph = graph
        self.norm = nn.LayerNorm(width)
        self.mlp = mlp([2 * width if graph else width, 2 * width, width])

    def forward(self, h: torch.Tensor, a_norm: torch.Tensor | None) -> torch.Tensor:
        x = self.norm(h)
        if self.graph:
            x = torch.cat([x, a_norm @ x], dim=-1)  # (B, n, 2d): self and neighbourhood mean
        return h + self.mlp(x)


@dataclass
class Renormalised:
    """One coarsening step: coarse tokens, coarse adjacency, assignment and its auxiliary losses."""

    tokens: torch.Tensor  # (B, m, d)
    adjacency: torch.Tensor  # (B, m, m)
    assignment: torch.Tensor  # (B, n, m), rows sum to 1
    entropy: torch.Tensor  # mean of -S log S over the assignment's entries
    link: torch.Tensor  # mean (A / max A - S S^T)^2


class Renormalisation(nn.Module):
    """Learned coarse-graining of n nodes into m (DiffPool-style soft assignment)."""

    def __init__(self, width: int, coarse_nodes: int):
        super().__init__()
        self.embed = NodeLayer(width, graph=True)
        self.assign = NodeLayer(width, graph=True)
        self.logits = nn.Linear(width, coarse_nodes)

    def forward(self, h: torch.Tensor, adj: torch.Tensor) -> Renormalised:
        a_norm = normalised_adjacency(adj)
        s = torch.softmax(self.logits(self.assign(h, a_norm)), dim=-1)  # (B, n, m)
        mass = s.sum(dim=1).clamp_min(1e-9)  # (B, m)
        tokens = s.transpose(1, 2) @ self.embed(h, a_norm) / mass[..., None]  # (B, m, d)
        coarse_adj = s.transpose(1, 2) @ adj @ s  # (B, m, m)
        entropy = -(s * torch.log(s.clamp_min(1e-12))).mean()  # low: confident assignments
        scale = adj.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12)
        link = (adj / scale - s @ s.transpose(1, 2)).square().mean()
        return Renormalised(tokens, coarse_adj, s, entropy, link)


class FourierFeatures(nn.Module):
    """[cos, sin](2 pi v B) with a fixed Gaussian B (Tancik et al. 2020): the trunk's input."""

    def __init__(self, in_dim: int, features: int, scale: float):
        super().__init__()
        self.register_buffer("B", torch.randn(in_dim, features // 2) * scale)

    def forward(self, v: torch.Tensor) -> torch.Tensor:
        x = 2 * torch.pi * v @ self.B
        return torch.cat([torch.cos(x), torch.sin(x)], dim=-1)


@dataclass
class Forecast:
    """What a forward pass returns; `u` covers all tokens, fine nodes first."""

    u: torch.Tensor  # (B, T, H) decoded values of every token at every lead time
    num_fine: int
    levels: list[Renormalised] = field(default_factory=list)  # roma: one per coarsening step
    pde_residual: torch.Tensor | None = None  # (B, T, H) when asked for
    attention: torch.Tensor | None = None  # (B, T, T) last Transformer layer, mean over heads

    @property
    def fine(self) -> torch.Tensor:
        return self.u[:, : self.num_fine]  # (B, n, H)

    @property
    def coarse(self) -> list[torch.Tensor]:
        """[(B, m_l, H)] per renormalisation level."""
        out, start = [], self.num_fine
        for level in self.levels:
            m = level.assignment.shape[-1]
            out.append(self.u[:, start : start + m])
            start += m
        return out


class GraphOperator(nn.Module):
    def __init__(self, cfg: ModelConfig, node_features: int, pe_features: int):
        super().__init__()
        self.cfg = cfg
        d = cfg.width
        graph = cfg.kind != "deeponet"
        self.embed = nn.Linear(node_features + pe_features, d)
        self.encoder = nn.ModuleList(NodeLayer(d, graph) for _ in range(cfg.encoder_layers))
        if cfg.kind == "roma":
            self.renormalisation = nn.ModuleList(Renormalisation(d, m) for m in cfg.coarse_nodes)
            self.level_embedding = nn.Embedding(len(cfg.coarse_nodes) + 1, d)
            self.transformer = nn.ModuleList(
                nn.TransformerEncoderLayer(
                    d,
                    cfg.heads,
                    dim_feedforward=2 * d,
                    dropout=0.0,
                    activation="gelu",
                    batch_first=True,
                    norm_first=True,
                )
                for _ in range(cfg.transformer_layers)
            )
        self.out_norm = nn.LayerNorm(d)
        self.coordinates = nn.Linear(d, cfg.coord_dim)
        self.fourier = FourierFeatures(1 + cfg.coord_dim, cfg.fourier_features, cfg.fourier_scale)
        self.branch = nn.Linear(d, cfg.basis)
        if cfg.kind == "nomad_mp":
            self.nomad = mlp([cfg.basis + cfg.fourier_features] + [d] * cfg.trunk_layers + [1])
        else:
            self.trunk = mlp([cfg.fourier_features] + [d] * cfg.trunk_layers + [cfg.basis])
            self.bias = nn.Parameter(torch.zeros(()))
        if cfg.learned_pde:
            self.pde = mlp([cfg.fourier_features + 2 + cfg.coord_dim, d, d, 1])

    def forward(
        self,
        history: torch.Tensor,
        pe: torch.Tensor,
        adj: torch.Tensor,
        lead: torch.Tensor,
        *,
        pde: bool = False,
        attention: bool = False,
    ) -> Forecast:
        """history (B, n, k) node features, pe (B, n, P), adj (B, n, n) 0/1, lead (H,) times in (0, 1]."""
        h = self.embed(torch.cat([history, pe], dim=-1))  # (B, n, d)
        a_norm = normalised_adjacency(adj) if self.cfg.kind != "deeponet" else None
        for layer in self.encoder:
            h = layer(h, a_norm)
        levels: list[Renormalised] = []
        weights = None
        if self.cfg.kind == "roma":
            tokens, z, a = [h], h, adj
            for step in self.renormalisation:
                level = step(z, a)
                levels.append(level)
                tokens.append(level.tokens)
                z, a = level.tokens, level.adjacency
            level_ids = torch.cat([torch.full((t.shape[1],), i, device=h.device) for i, t in enumerate(tokens)])
            h = torch.cat(tokens, dim=1) + self.level_embedding(level_ids)  # (B, n + sum m, d)
            for i, layer in enumerate(self.transformer):
                if attention and i == len(self.transformer) - 1:
                    x = layer.norm1(h)
                    _, weights = layer.self_attn(x, x, x, need_weights=True, average_attn_weights=True)
                h = layer(h)
        h = self.out_norm(h)
        u, residual = self._decode(h, lead, pde)
        return Forecast(u=u, num_fine=history.shape[1], levels=levels, pde_residual=residual, attention=weights)

    def _decode(self, h: torch.Tensor, lead: torch.Tensor, pde: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        B, T, _ = h.shape
        H = lead.shape[0]
        t = lead.to(h.dtype).view(1, 1, H, 1).expand(B, T, H, 1)
        xi = self.coordinates(h).unsqueeze(2).expand(B, T, H, self.cfg.coord_dim)
        if pde:  # separate copies, so that autograd gives each (token, lead) its own derivatives
            t, xi = t.clone().requires_grad_(True), xi.clone()
        phi = self.fourier(torch.cat([t, xi], dim=-1))  # (B, T, H, F)
        branch = self.branch(h)  # (B, T, p)
        if self.cfg.kind == "nomad_mp":
            u = self.nomad(torch.cat([branch.unsqueeze(2).expand(B, T, H, -1), phi], dim=-1)).squeeze(-1)
        else:
            u = (branch.unsqueeze(2) * self.trunk(phi)).mean(-1) + self.bias  # (B, T, H)
        if not pde:
            return u, None
        if not self.cfg.learned_pde:
            raise ValueError("a PDE residual needs a model built with learned_pde")
        du_dt, du_dxi = torch.autograd.grad(u.sum(), (t, xi), create_graph=True)  # (B,T,H,1), (B,T,H,c)
        laplacian = sum(
            torch.autograd.grad(du_dxi[..., k].sum(), xi, create_graph=True)[0][..., k] for k in range(xi.shape[-1])
        )  # (B, T, H)
        rhs = self.pde(torch.cat([phi, u.unsqueeze(-1), du_dxi, laplacian.unsqueeze(-1)], dim=-1)).squeeze(-1)
        return u, du_dt.squeeze(-1) - rhs


def build_model(cfg: ModelConfig, node_features: int) -> GraphOperator:
    return GraphOperator(cfg, node_features=node_features, pe_features=cfg.pe_dim * len(cfg.pe_kinds))


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters (the fixed Fourier matrix is a buffer, not counted)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
