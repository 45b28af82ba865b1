"""ROMA and the baselines: shapes, the renormalisation's invariants, the PDE residual."""

import pytest
import torch

from irno.roma.config import ModelConfig
from irno.roma.models import Renormalisation, build_model, count_parameters, normalised_adjacency


def random_graphs(B, n, p=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(B, n, n, generator=g) < p).float().triu(1)
    return a + a.transpose(1, 2)  # (B, n, n) symmetric 0/1


@pytest.mark.parametrize("kind", ["deeponet", "deeponet_mp", "nomad_mp", "roma"])
def test_shapes(kind):
    cfg = ModelConfig(kind=kind, width=16, coarse_nodes=[8, 3], heads=4, pe_dim=5, positional="laplacian+random_walk")
    model = build_model(cfg, node_features=12)
    B, n, H = 3, 20, 2
    out = model(
        torch.randn(B, n, 12), torch.randn(B, n, 10), random_graphs(B, n), torch.tensor([0.5, 1.0]), attention=True
    )
    tokens = n + (11 if kind == "roma" else 0)
    assert out.u.shape == (B, tokens, H) and out.fine.shape == (B, n, H)
    assert [c.shape for c in out.coarse] == ([(B, 8, H), (B, 3, H)] if kind == "roma" else [])
    assert (out.attention is not None) == (kind == "roma")
    if kind == "roma":
        assert out.attention.shape == (B, tokens, tokens)
        torch.testing.assert_close(out.attention.sum(-1), torch.ones(B, tokens))
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    assert "fourier.B" in dict(model.named_buffers())  # fixed, not a parameter


def test_baselines_differ_where_the_paper_says():
    params = {
        kind: count_parameters(build_model(ModelConfig(kind=kind, width=16, heads=4), 12))
        for kind in ("deeponet", "deeponet_mp", "roma")
    }
    assert params["deeponet"] < params["deeponet_mp"] < params["roma"]  # graph input, then pooling + Transformer
    # deeponet ignores the graph, message passing does not
    x, pe = torch.randn(1, 10, 12), torch.randn(1, 10, 16)
    for kind, uses_graph in (("deeponet", False), ("deeponet_mp", True)):
        model = build_model(ModelConfig(kind=kind, width=16, heads=4), 12)
        same = torch.allclose(
            model(x, pe, random_graphs(1, 10, seed=1), torch.ones(1)).u,
            model(x, pe, random_graphs(1, 10, seed=2), torch.ones(1)).u,
        )
        assert same != uses_graph


def test_renormalisation_invariants():
    torch.manual_seed(0)
    level = Renormalisation(width=8, coarse_nodes=5).double()
    h = torch.randn(2, 30, 8, dtype=torch.float64)
    adj = random_graphs(2, 30, p=0.2).double()
    out = level(h, adj)
    s = out.assignment
    assert s.shape == (2, 30, 5) and (s >= 0).all()
    torch.testing.assert_close(s.sum(-1), torch.ones(2, 30, dtype=torch.float64))  # rows sum to 1
    torch.testing.assert_close(out.adjacency, out.adjacency.transpose(1, 2))  # S^T A S is symmetric
    torch.testing.assert_close(out.adjacency, s.transpose(1, 2) @ adj @ s)
    # coarse tokens are weighted means of the embedded fine tokens
    embedded = level.embed(h, normalised_adjacency(adj))
    torch.testing.assert_close(out.tokens[0, 2], (s[0, :, 2:3] * embedded[0]).sum(0) / s[0, :, 2].sum())
    # auxiliary losses by hand
    torch.testing.assert_close(out.entropy, -(s * s.log()).mean())
    torch.testing.assert_close(out.link, (adj - s @ s.transpose(1, 2)).square().mean())


def test_pde_residual_is_du_dt_minus_learned_rhs():
    torch.manual_seed(0)
    cfg = ModelConfig(kind="deeponet_mp", width=8, heads=2, coord_dim=2, learned_pde=True)
    model = build_model(cfg, node_features=4).double()
    x, pe, adj = torch.randn(1, 6, 4).double(), torch.randn(1, 6, 16).double(), random_graphs(1, 6).double()
    lead = torch.tensor([0.3, 0.6], dtype=torch.float64)
    eps = 1e-6
    du_dt = (model(x, pe, adj, lead + eps).u - model(x, pe, adj, lead - eps).u) / (2 * eps)  # (1, 6, 2)
    # with the learned right-hand side F switched to a constant c, the residual is du/dt - c
    last = model.pde[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.25)
    residual = model(x, pe, adj, lead, pde=True).pde_residual
    assert residual.shape == (1, 6, 2)
    torch.testing.assert_close(residual, du_dt - 0.25, atol=1e-6, rtol=1e-6)
    # the residual loss trains both the decoder and F
    model(x, pe, adj, lead, pde=True).pde_residual.square().mean().backward()
    assert last.weight.grad.abs().sum() > 0 and model.trunk[0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        build_model(ModelConfig(kind="roma", width=8, heads=2), 4)(
            x.float(), pe.float(), adj.float(), lead.float(), pde=True
        )
