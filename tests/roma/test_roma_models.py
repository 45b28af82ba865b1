"""ROMA and the baselines, piece by piece by hand: the Poincare ball and the HGCN layer, the
renormalisation, the Gaussian-process input functions, the Transformer's embeddings, the trunk's
absolute time, the learned PDE, the parameter counts of the reference's configurations."""

import math

import numpy as np
import pytest
import torch
from scipy.interpolate import CubicSpline
from torch import nn

from irno.roma.models import (
    Ball,
    Decoder,
    GraphLayer,
    InputFunctions,
    Renormalisation,
    Transformer,
    build_model,
    count_parameters,
    parameter_counts,
    reference_parameter_count,
    segment_statistics,
)
from irno.roma.settings import ModelConfig, RunConfig, read_study_config
from irno.roma.study import apply_settings, model_defaults
from irno.settings import from_dict

C = 0.125  # the reference's curvature


def ring(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(2, E) edges of a ring with self loops (senders, receivers) and its (n, n) dense adjacency."""
    s = torch.arange(n)
    r = (s + 1) % n
    edges = torch.cat([torch.stack([s, r]), torch.stack([r, s]), torch.stack([s, s])], dim=1)
    adj = torch.zeros(n, n)
    adj[edges[0], edges[1]] = 1
    return edges, adj


def tiny(kind: str = "roma", **overrides) -> ModelConfig:
    settings = dict(
        width=8, depth=1, heads=2, basis=4, fourier_features=8, input_functions=3, function_grid=33, encoder_width=6
    )
    return ModelConfig(kind=kind, **{**settings, "coarse_nodes": 3, "encoding_width": 4, **overrides})


# ----------------------------------------------------------------------------- the Poincare ball


def mobius_add(x, y, c=C):
    """Textbook Mobius addition, one pair of vectors."""
    xy, x2, y2 = x @ y, x @ x, y @ y
    return ((1 + 2 * c * xy + c * y2) * x + (1 - c * x2) * y) / (1 + 2 * c * xy + c**2 * x2 * y2)


def test_ball_maps_by_hand():
    ball = Ball(C)
    torch.manual_seed(0)
    v = torch.randn(5, 4, dtype=torch.float64)
    x = ball.exp0(v)
    norms = v.norm(dim=-1)
    # exp_0(v) = tanh(sqrt(c) |v|) v / (sqrt(c) |v|): inside the ball of radius 1 / sqrt(c)
    torch.testing.assert_close(x.norm(dim=-1), torch.tanh(math.sqrt(C) * norms) / math.sqrt(C))
    torch.testing.assert_close(ball.log0(x), v)
    torch.testing.assert_close(ball.mobius_add(x[0], torch.zeros(4, dtype=torch.float64)), x[0])
    torch.testing.assert_close(ball.mobius_add(x[0], x[1]), mobius_add(x[0], x[1]))
    # geodesic distances: d(x, y) = 2 / sqrt(c) artanh(sqrt(c) |(-x) (+) y|), from 0: 2 |log_0 x|
    d2 = ball.pairwise_sqdist(x[None])[0]
    by_hand = torch.stack(
        [torch.stack([2 / math.sqrt(C) * torch.atanh(math.sqrt(C) * mobius_add(-a, b).norm()) for b in x]) for a in x]
    )
    torch.testing.assert_close(d2, by_hand.square())
    origin = torch.zeros(1, 4, dtype=torch.float64)
    d0 = ball.pairwise_sqdist(torch.cat([origin, x])[None])[0, 0, 1:]
    torch.testing.assert_close(d0.sqrt(), 2 * norms)
    # points far out are projected just inside the boundary
    far = ball.exp0(torch.full((1, 4), 100.0, dtype=torch.float64))
    assert far.norm() == pytest.approx((1 - 1e-5) / math.sqrt(C))
    # c = None: every map is the identity and distances are Euclidean
    flat = Ball(None)
    torch.testing.assert_close(flat.exp0(v), v)
    torch.testing.assert_close(flat.pairwise_sqdist(v[None])[0], torch.cdist(v, v).square())


def test_mobius_linear_by_hand():
    ball = Ball(C)
    torch.manual_seed(1)
    layer = nn.Linear(4, 3).double()
    x = ball.exp0(torch.randn(2, 4, dtype=torch.float64))
    out = ball.linear(x, layer)
    for i in range(2):
        mx = layer.weight @ x[i]
        # M (x) x = tanh(|Mx| / |x| artanh(sqrt(c) |x|)) Mx / (sqrt(c) |Mx|), then (+) exp_0(bias)
        matvec = torch.tanh(mx.norm() / x[i].norm() * torch.atanh(math.sqrt(C) * x[i].norm())) * mx
        matvec = matvec / (math.sqrt(C) * mx.norm())
        torch.testing.assert_close(out[i], mobius_add(matvec, ball.exp0(layer.bias)))
    torch.testing.assert_close(Ball(None).linear(x, layer), layer(x))


def test_segment_statistics_by_hand():
    message = torch.tensor([[[1.0], [3.0], [-2.0], [5.0]]])  # (1, E=4, 1)
    receiver = torch.tensor([0, 0, 1, 0])
    stats = segment_statistics(message, receiver, 3)[0]  # (3 nodes, 4): sum, mean, variance, max
    torch.testing.assert_close(stats[0], torch.tensor([9.0, 3.0, 8 / 3, 5.0]))  # messages 1, 3, 5
    torch.testing.assert_close(stats[1], torch.tensor([-2.0, -2.0, 0.0, -2.0]))
    assert stats[2, :3].eq(0).all() and stats[2, 3] == -math.inf  # no message: the max is -inf


@pytest.mark.parametrize("curvature", [C, None])
def test_hgcn_layer_by_hand(curvature):
    """Mobius linear, messages MLP([x_i, x_j - x_i]) over the edges, sum/mean/var/max, MLP, GELU."""
    torch.manual_seed(2)
    ball = Ball(curvature)
    layer = GraphLayer(3, 4, ball, edge_mlp=True).double()
    edges, _ = ring(5)
    x = ball.exp0(0.5 * torch.randn(1, 5, 3, dtype=torch.float64))
    out = layer(x, edges)[0]
    t = ball.log0(ball.linear(x[0], layer.linear))  # (5, 4) in the tangent space
    for i in range(5):
        senders = edges[0][edges[1] == i]
        messages = torch.stack([layer.edge(torch.cat([t[i], t[j] - t[i]])) for j in senders])
        stats = torch.cat([messages.sum(0), messages.mean(0), messages.var(0, unbiased=False), messages.max(0).values])
        h = ball.exp0(layer.aggregate(stats))
        expected = ball.exp0(torch.nn.functional.gelu(ball.log0(h), approximate="tanh"))
        torch.testing.assert_close(out[i], expected)
    assert not curvature or (out.norm(dim=-1) < 1 / math.sqrt(C)).all()


def test_message_passing_sees_the_graph_deeponet_does_not():
    torch.manual_seed(3)
    x = torch.rand(1, 10, 8)
    edges_a, adj_a = ring(10)
    perm = torch.randperm(10)
    edges_b, adj_b = perm[edges_a], torch.zeros(10, 10)
    adj_b[edges_b[0], edges_b[1]] = 1
    for kind, sees in (("deeponet", False), ("deeponet_mp", True), ("roma", True)):
        model = build_model(tiny(kind, encoding_width=0), history=8, subgraph_nodes=10)
        outs = [
            model(x, torch.ones(1), e, a, generator=torch.Generator().manual_seed(0)).fine
            for e, a in ((edges_a, adj_a), (edges_b, adj_b))
        ]
        assert torch.allclose(*outs) != sees, kind


# ----------------------------------------------------------------------------- renormalisation


def test_renormalisation_by_hand():
    torch.manual_seed(4)
    n, m, e, k = 12, 3, 6, 5
    level = Renormalisation(e, m, Ball(C), edge_mlp=True, frozen_skips=True, fermi_dirac=[0.5, 3.0]).double()
    edges, adj = ring(n)
    adj = adj.double()
    h, u = torch.randn(2, n, e, dtype=torch.float64), torch.rand(2, n, k, dtype=torch.float64)
    out = level(u, h, edges, adj)
    s = out.assignment
    assert s.shape == (2, n, m) and (s >= 0).all()
    torch.testing.assert_close(s.sum(1), torch.ones(2, m, dtype=torch.float64))  # columns sum to 1
    # S = (LN(pool(h)) / column norms)^2
    pooled = level.norm(level.ball.log0(level.ball.exp0(level.pool(h, edges))))
    torch.testing.assert_close(s, (pooled / pooled.norm(dim=1, keepdim=True)).square())
    # coarse tokens: S^T u (m / n) and S^T embed(h) (m / n); A' = S^T A S
    torch.testing.assert_close(out.history, s.transpose(1, 2) @ u * (m / n))
    embedded = level.ball.log0(level.ball.exp0(level.embed(h, edges)))
    torch.testing.assert_close(out.features, s.transpose(1, 2) @ embedded * (m / n))
    torch.testing.assert_close(out.adjacency, s.transpose(1, 2) @ adj @ s)
    # losses: e x mean entropy of S and of A', and the Fermi-Dirac link loss
    entropy = lambda a: (-(a * a.log())).mean() * math.e  # noqa: E731
    torch.testing.assert_close(out.losses[0], entropy(s))
    torch.testing.assert_close(out.losses[1], entropy(out.adjacency))
    x = level.ball.exp0(h)
    per_window = []
    for b in range(2):
        errors = {0: [], 1: []}
        for i in range(n):
            for j in range(i, n):  # pairs i <= j
                d2 = (2 / math.sqrt(C) * torch.atanh(math.sqrt(C) * mobius_add(-x[b, i], x[b, j]).norm())) ** 2 / e
                p = torch.sigmoid(-(d2 - math.exp(0.5)) / (math.exp(3.0) + 1e-5))
                errors[int(adj[i, j])].append((adj[i, j] - p) ** 4)
        per_window.append((torch.stack(errors[0]).mean() + torch.stack(errors[1]).mean()) / 2)
    torch.testing.assert_close(out.losses[2], torch.stack(per_window).mean())


# ----------------------------------------------------------------------------- input functions


def test_input_functions_are_gaussian_process_samples():
    functions = InputFunctions(count=4000, length_scale=0.3, grid=11, layout="node")
    values = functions.sample(1, torch.Generator().manual_seed(0))[0].double()  # (4000, 11)
    x = torch.linspace(0, 1, 11, dtype=torch.float64)
    kernel = torch.exp(-0.5 * ((x[:, None] - x[None, :]) / 0.3) ** 2)
    covariance = values.T @ values / values.shape[0]
    torch.testing.assert_close(covariance, kernel, atol=0.08, rtol=0)
    # fresh functions per generator state
    a, b = functions.sample(2, torch.Generator().manual_seed(1))
    assert not torch.allclose(a, b)


def test_input_functions_carry_the_reference_jitter():
    """The reference samples with the Cholesky factor of K + 1e-13 I: white noise of std 3.2e-7
    on the grid values beside the smooth sample (what the smooth modes do not explain)."""
    functions = InputFunctions(count=2000, length_scale=1.0, grid=200, layout="node")
    values = functions.sample(1, torch.Generator().manual_seed(2))[0].double()  # (2000, 200)
    basis = functions.basis.double()
    smooth = values @ basis @ torch.linalg.pinv(basis.T @ basis) @ basis.T  # projected on the modes
    assert (values - smooth).std().item() == pytest.approx(math.sqrt(1e-13), rel=0.1)


def test_input_functions_are_the_reference_cubic_splines():
    """Not-a-knot cubic splines through the grid values (scipy's, the reference's jax_cosmo spline),
    their end pieces continued outside [0, 1]; a cubic polynomial is its own spline everywhere."""
    grid, count = 6, 2
    x = np.linspace(0, 1, grid)
    cubic = lambda v: 2 - v + 3 * v**2 - 5 * v**3  # noqa: E731
    table = np.stack([cubic(x), np.random.default_rng(0).standard_normal(grid)])  # (F, G)
    u = torch.tensor([[[0.0, 0.25, 0.37], [1.0, 0.5, 1.25]], [[-0.2, 0.9, 1.1], [0.6, 0.61, 0.99]]])  # (B, T, k)
    functions = torch.tensor(table, dtype=torch.float32).expand(2, -1, -1)  # (B, F, G)
    node = InputFunctions(count, 1.0, grid, "node")(u, functions)  # (B, T, F k)
    expected = [cubic(u.double()), CubicSpline(x, table[1], bc_type="not-a-knot")(u.double())]  # each (B, T, k)
    for c in range(count):
        torch.testing.assert_close(
            node[..., c * 3 : (c + 1) * 3].double(), torch.as_tensor(expected[c]), atol=1e-5, rtol=0
        )
    # the reference's layout: its reshape of the (F, T, k) array into (T, F k)
    reference = InputFunctions(count, 1.0, grid, "reference")(u, functions)
    by_function = node.view(2, 2, count, 3).transpose(1, 2)  # (B, F, T, k)
    torch.testing.assert_close(reference, by_function.reshape(2, 2, count * 3))
    torch.testing.assert_close(reference[0, 0], torch.cat([by_function[0, 0, 0], by_function[0, 0, 1]]))  # f_1 of both


# ----------------------------------------------------------------------------- Transformer and trunk


def test_transformer_embeddings_by_hand():
    """lin_in sees x + index embedding x (fine or coarse scale) + level embedding x scale + context."""
    torch.manual_seed(5)
    cfg = tiny("roma", index_embedding=[0.25, 1.0], level_embedding=0.5)
    transformer = Transformer(cfg, d_in=6, d_out=4, fine=3, coarse=2)
    seen = {}
    transformer.lin_in.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    x, context = torch.randn(1, 5, 6), torch.randn(1, 5, 6)
    transformer(x, context)
    scale = torch.tensor([0.25, 0.25, 0.25, 1.0, 1.0])[:, None]
    level = transformer.level_embedding[torch.tensor([0, 0, 0, 1, 1])] * 0.5
    torch.testing.assert_close(seen["x"][0], x[0] + transformer.index_embedding * scale + level + context[0])
    # the baselines: index embedding of scale 1, no level embedding
    baseline = Transformer(tiny("deeponet_mp"), d_in=6, d_out=4, fine=5, coarse=0)
    assert baseline.level_embedding is None and baseline.index_scale == [1.0, 1.0]
    assert baseline.index_embedding.shape == (5, 6)


def test_trunk_sees_the_absolute_time():
    torch.manual_seed(6)
    cfg = tiny("deeponet", time_scale=1e-2, space_scale=1e-2)
    decoder = Decoder(cfg, features=0).double()
    tx = torch.tensor([[500.0, 0.0, 0.0, 0.0], [1500.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    # the Fourier features of (t, x) with B fixed, rows scaled by (time_scale, space_scale x o), no 2 pi
    B = decoder.fourier
    assert B.shape == (1 + cfg.outputs, cfg.fourier_features // 2) and "fourier" not in dict(decoder.named_parameters())
    torch.testing.assert_close(decoder.features_of(tx)[0], torch.cat([torch.sin(500 * B[0]), torch.cos(500 * B[0])]))
    # the forecast depends on the window's absolute time, not only on its history
    model = build_model(cfg, history=8, subgraph_nodes=6)
    edges, adj = ring(6)
    x = torch.rand(1, 6, 8)
    outs = [
        model(x, torch.tensor([t]), edges, adj, generator=torch.Generator().manual_seed(0)).fine for t in (50.0, 900.0)
    ]
    assert not torch.allclose(*outs)


# ----------------------------------------------------------------------------- the learned PDE


@pytest.mark.parametrize("pde", ["emergent", "burgers"])
def test_pde_residual_and_its_gradient_by_finite_differences(pde):
    """with_pde's forward-mode derivatives against central differences of the decoder; the
    residual's gradient is the reference's: in r's (t, x) argument with u, du and lap u fixed."""
    torch.manual_seed(7)
    cfg = tiny("roma", outputs=2, pde=pde, time_scale=0.3, space_scale=0.3)
    decoder = Decoder(cfg, features=3).double()
    N, o, p = 3, 2, cfg.basis
    tx = torch.randn(N, 1 + o, dtype=torch.float64)
    z, b = torch.randn(N, 3, dtype=torch.float64), torch.randn(N, p * o, dtype=torch.float64)
    u, r, gradient = decoder.with_pde(tx, z, b)
    eps = 1e-4
    unit = torch.eye(1 + o, dtype=torch.float64)

    def jacobian_and_laplacian(tx):
        jac = torch.stack(
            [(decoder(tx + eps * unit[d], z, b) - decoder(tx - eps * unit[d], z, b)) / (2 * eps) for d in range(1 + o)],
            dim=-1,
        )  # (N, o, 1 + o)
        lap = sum(
            (decoder(tx + eps * unit[d], z, b) - 2 * decoder(tx, z, b) + decoder(tx - eps * unit[d], z, b)) / eps**2
            for d in range(1, 1 + o)
        )  # (N, o)
        return jac, lap

    jac, lap = jacobian_and_laplacian(tx)
    torch.testing.assert_close(u, decoder(tx, z, b))
    torch.testing.assert_close(r, decoder.residual(tx, z, b, u, jac, lap), atol=1e-5, rtol=1e-4)
    if pde == "burgers":  # r = u_t + F (du/dx) u - v lap u, F and v learned from (t, x, z)
        phi = torch.cat([decoder.features_of(tx), z], dim=-1)
        basis = b.view(N, p, o)
        F, v = ((basis * trunk(phi)[..., None]).sum((1, 2)) / (p * o) for trunk in decoder.pde_trunks)
        by_hand = jac[..., 0] + F[:, None] * (jac[..., 1:] @ u[..., None])[..., 0] - v[:, None] * lap
        torch.testing.assert_close(r, by_hand, atol=1e-5, rtol=1e-4)

    # the reference's jacfwd(residual)(tx, z, u, grad, lap): u, jac, lap computed once at tx, fixed
    h = 1e-4
    by_differences = torch.stack(
        [
            (
                decoder.residual(tx + h * unit[d], z, b, u, jac, lap)
                - decoder.residual(tx - h * unit[d], z, b, u, jac, lap)
            )
            / (2 * h)
            for d in range(1 + o)
        ],
        dim=-1,
    )  # (N, o, 1 + o)
    torch.testing.assert_close(gradient, by_differences, atol=1e-6, rtol=1e-5)

    def full_residual(tx):  # u, jac and lap recomputed at every (t, x): what the reference does not take
        jac, lap = jacobian_and_laplacian(tx)
        return decoder.residual(tx, z, b, decoder(tx, z, b), jac, lap)

    h = 1e-3
    total = torch.stack(
        [(full_residual(tx + h * unit[d]) - full_residual(tx - h * unit[d])) / (2 * h) for d in range(1 + o)], dim=-1
    )
    assert (total - gradient).abs().max() > 10 * (by_differences - gradient).abs().max() + 1e-3


def test_forward_shapes_and_pde_losses():
    torch.manual_seed(8)
    edges, adj = ring(6)
    x, pe, t = torch.rand(2, 6, 8), torch.rand(2, 6, 5), torch.tensor([20.0, 30.0])
    for kind in ("deeponet", "deeponet_mp", "nomad_mp", "roma"):
        model = build_model(tiny(kind), history=8, subgraph_nodes=6, encoding_dim=5)
        out = model(x, t, edges, adj, pe, pde=True, attention=True)
        tokens = 6 + (3 if kind == "roma" else 0)
        assert out.prediction.shape == (2, tokens) and (out.prediction >= 0).all()  # a norm
        assert (out.renormalised is not None) == (kind == "roma")
        assert out.pde_loss.ndim == 0 and out.pde_gradient_loss.ndim == 0
        assert (out.attention is None) == (kind == "deeponet")
        assert kind == "deeponet" or out.attention.shape == (2, 2, tokens, tokens)
        loss = out.fine.mean() + out.pde_loss + out.pde_gradient_loss
        if out.renormalised is not None:
            loss = loss + out.renormalised.losses.sum()
        loss.backward()
        assert all(p.grad is not None for p in model.parameters()), kind


def test_initialisation_and_frozen_skips():
    model = build_model(tiny("roma"), history=8, subgraph_nodes=10, encoding_dim=5)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            w = module.weight.detach()
            out_dim, in_dim = w.shape
            gram = w @ w.T if out_dim <= in_dim else w.T @ w * (in_dim / out_dim)
            torch.testing.assert_close(gram, torch.eye(min(out_dim, in_dim)), atol=1e-5, rtol=0)  # orthogonal
            assert module.bias is None or module.bias.eq(0).all()
    buffers = dict(model.named_buffers())
    assert "decoder.trunk.skips.0.weight" in buffers  # fixed, neither trained nor counted
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())
    trainable = build_model(tiny("roma", frozen_skips=False), history=8, subgraph_nodes=10, encoding_dim=5)
    assert count_parameters(trainable) > count_parameters(model)


# ----------------------------------------------------------------------------- parameter counts


def test_the_reference_counts_the_fermi_dirac_pair_in_every_model():
    """Its model class holds (r, t) whatever the kind: a DeepONet without PDE counts 2 more."""
    deeponet = build_model(tiny("deeponet", learned_pde=False), history=8, subgraph_nodes=10)
    assert reference_parameter_count(deeponet) == count_parameters(deeponet) + 2
    roma = build_model(tiny("roma"), history=8, subgraph_nodes=10, encoding_dim=5)
    assert roma.renormalisation.fermi_dirac.numel() == 2 and roma.renormalisation.fermi_dirac.requires_grad


def reference_count(study, kind: str, **model) -> int:
    settings = apply_settings(model_defaults(study, kind, "km3m"), {f"model.{k}": v for k, v in model.items()})
    settings["model"]["function_grid"] = 16  # the grid has no parameters; a small one is quick to build
    run = from_dict(RunConfig, settings)
    encodings = study.datasets["km3m"].encodings
    return parameter_counts(run, sum(getattr(encodings, k) for k in run.model.used_encodings))[1]


def test_paper_sizes_and_matched_baselines():
    """The reference's sizes (264M, 738M, 1.1B; 324M, 896M, 1.3B on the Burgers-like data) and its
    baselines within 10 % of ROMA's count, at the paper config's widths."""
    study = read_study_config("config/roma.yaml")
    roma = reference_count(study, "roma")
    assert roma == pytest.approx(264e6, rel=0.01)
    for kind in ("deeponet", "deeponet_mp", "nomad_mp"):  # the data experiment's widths (per_model)
        assert reference_count(study, kind) == pytest.approx(roma, rel=0.1), kind
    for kind, width in (("deeponet", 1524), ("deeponet_mp", 1080), ("nomad_mp", 1054)):  # effective dynamics
        assert reference_count(study, kind, width=width, learned_pde=True) == pytest.approx(roma, rel=0.1), kind
    assert reference_count(study, "roma", width=2048) == pytest.approx(738e6, rel=0.01)
    assert reference_count(study, "roma", width=2560, basis=2560) == pytest.approx(1.1e9, rel=0.01)
    burgers = dict(pde="burgers", manifold="euclidean", encoding_width=0)
    assert reference_count(study, "roma", width=1024, **burgers) == pytest.approx(324e6, rel=0.01)
    assert reference_count(study, "roma", width=2048, **burgers) == pytest.approx(896e6, rel=0.01)
    assert reference_count(study, "roma", width=2560, **burgers) == pytest.approx(1.31e9, rel=0.01)
