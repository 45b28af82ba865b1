"""Base operators: model directories, forward modes, local training, the base check, the h0 cache."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from irno import IrnoError
from irno.base import BaseOperator, fetch_base, load_base
from irno.base.cache import BasePredictionCache, RefinementDataset, cache_base, expected_meta
from irno.base.check import check_base, checked_forward, choose_forward, per_field_vrmse
from irno.base.operator import build_model, load_model_dir, read_provenance, save_base
from irno.base.train import one_step_mse, persistence, train_base
from irno.cli import main as irno_main
from irno.config import BaseConfig
from irno.data.store import PreparedSplit, prepare_split
from irno.data.well import build_manifest
from irno.data.wellfile import write_stats, write_well_file
from irno.files import write_json, write_yaml
from irno.resume import seed_everything
from irno.settings import from_dict

TINY_FNO = {"modes1": 4, "modes2": 4, "hidden_channels": 8}


def tiny_cfg(**overrides) -> BaseConfig:
    values = {
        "model_class": "FNO",
        "source": "train",
        "model_kwargs": TINY_FNO,
        "epochs": 3,
        "lr": 1e-2,
        "batch_size": 16,
        "device": "cpu",
    }
    return BaseConfig(**{**values, **overrides})


def write_standing_waves(root: Path, grid: int = 16, frames: int = 8, n_traj: int = 8, seed: int = 0) -> Path:
    """Two fields of random standing waves advancing a quarter period per frame.

    Then y = -(the frame before the last input), a map every sample teaches and that holds on
    unseen trajectories, while persistence is as wrong as it gets (MSE ~ 2 x the variance).
    """
    rng = np.random.default_rng(seed)
    x = np.arange(grid) * 2 * np.pi / grid
    X, Y = np.meshgrid(x, x, indexing="ij")
    t = np.arange(frames)[:, None, None]
    folder = root / "datasets" / "active_matter"
    for split, n_files in {"train": 2, "valid": 1}.items():
        for i in range(n_files):
            fields = np.zeros((2, n_traj, frames, grid, grid), np.float32)
            for field, b, _ in np.ndindex(2, n_traj, 4):
                kx, ky = rng.integers(-2, 3, size=2)
                space = rng.normal() * np.cos(kx * X + ky * Y + rng.uniform(0, 2 * np.pi))
                fields[field, b] += space * np.cos(np.pi / 2 * t + rng.uniform(0, 2 * np.pi))
            write_well_file(
                folder / "data" / split / f"waves_{i}.hdf5",
                dataset_name="active_matter",
                time=np.arange(frames, dtype=np.float32),
                coords={"x": x.astype(np.float32), "y": x.astype(np.float32)},
                fields={0: {"a": fields[0], "b": fields[1]}},
            )
    write_stats(folder)
    return root


@pytest.fixture(scope="module")
def waves(tmp_path_factory) -> dict[str, Path]:
    """Prepared train and valid stores of the standing waves (2 fields, 16 x 16): split -> store."""
    root = tmp_path_factory.mktemp("waves")
    write_standing_waves(root / "well")
    write_json(
        root / "manifest.json", build_manifest(root / "well", "active_matter", source="test", splits=("train", "valid"))
    )
    return {split: prepare_split(root / "manifest.json", split, root / split) for split in ("train", "valid")}


@pytest.fixture(scope="module")
def trained(waves, tmp_path_factory):
    """A tiny FNO trained on the standing waves: (config, model directory)."""
    cfg = tiny_cfg()
    out = tmp_path_factory.mktemp("base") / "model"
    train_base(cfg, PreparedSplit(waves["train"]), PreparedSplit(waves["valid"]), out)
    return cfg, out


def random_model(model_class="FNO", **kwargs):
    torch.manual_seed(0)
    cfg = BaseConfig(model_class=model_class, source="train", model_kwargs=kwargs or TINY_FNO)
    return build_model(cfg, 44, 11, (32, 32)).eval()


# ----------------------------------------------------------------------------- model directories


def test_save_pretrained_from_pretrained_round_trip_is_exact(tmp_path):
    model = random_model()
    save_base(model, tmp_path / "m", {"model_class": "FNO", "source": "test"})
    again = load_model_dir("FNO", tmp_path / "m")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    x = torch.randn(2, 44, 32, 32)
    assert torch.equal(model(x), again(x))
    # the same directory as base.pretrained goes through fetch (a local directory needs no network)
    cfg = BaseConfig(model_class="FNO", pretrained=str(tmp_path / "m"), forward="fixed")
    fetch_base(cfg, tmp_path / "fetched")
    assert read_provenance(tmp_path / "fetched")["source"] == "local"
    base = load_base(cfg, tmp_path / "fetched")
    assert torch.equal(base(x), model(x))
    assert not any(p.requires_grad for p in base.parameters()) and not base.training


def test_model_directory_problems_are_named(tmp_path):
    model = random_model()
    save_base(model, tmp_path / "m", {"model_class": "FNO", "source": "local", "pretrained": "x/y", "revision": "abc"})
    with pytest.raises(IrnoError, match="model class 'FNO', the config says base.model_class='TFNO'"):
        load_base(BaseConfig(model_class="TFNO", pretrained="x/y", revision="abc"), tmp_path / "m")
    with pytest.raises(
        IrnoError, match="fetched from 'x/y' at revision 'abc', the config says .*base.revision='v2'.*irno base fetch"
    ):
        load_base(BaseConfig(pretrained="x/y", revision="v2"), tmp_path / "m")
    (tmp_path / "m" / "model.safetensors").unlink()
    with pytest.raises(IrnoError, match="model.safetensors: missing"):
        load_model_dir("FNO", tmp_path / "m")
    # weights of another shape never load silently (the Hub mixin's default is strict=False)
    save_base(random_model(modes1=4, modes2=4, hidden_channels=16), tmp_path / "wide", {"model_class": "FNO"})
    (tmp_path / "wide" / "config.json").write_text(
        json.dumps({**json.loads((tmp_path / "wide" / "config.json").read_text()), "hidden_channels": 8})
    )
    with pytest.raises(IrnoError, match="wide: does not load as a FNO"):
        load_model_dir("FNO", tmp_path / "wide")
    with pytest.raises(IrnoError, match="base.model_kwargs"):
        build_model(tiny_cfg(model_kwargs={"modes": 4}), 44, 11, (32, 32))


def test_offline_hub_says_how_to_use_a_local_directory(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    cfg = BaseConfig(model_class="FNO", pretrained="polymathic-ai/FNO-active_matter", revision="main")
    with pytest.raises(IrnoError) as err:
        fetch_base(cfg, tmp_path / "m")
    message = str(err.value)
    assert "polymathic-ai/FNO-active_matter@main" in message and "base.pretrained: DIR" in message
    assert "FNO.from_pretrained('polymathic-ai/FNO-active_matter', revision='main').save_pretrained(DIR)" in message
    assert not (tmp_path / "m").exists()
    with pytest.raises(IrnoError, match="neither a local directory nor a Hub id"):
        fetch_base(BaseConfig(pretrained="./no/such/dir"), tmp_path / "m")


# ----------------------------------------------------------------------------- forward modes


@pytest.mark.parametrize("model_class", ["FNO", "TFNO"])
def test_forward_modes_differ_and_legacy_is_projection_of_lifting(model_class):
    model = random_model(model_class)
    x = torch.randn(2, 44, 32, 32)
    fixed, legacy = BaseOperator(model, "fixed"), BaseOperator(model, "legacy")
    with torch.no_grad():
        assert torch.equal(fixed(x), model(x))
        assert torch.equal(legacy(x), model.model.projection(model.model.lifting(x)))
        assert (fixed(x) - legacy(x)).abs().max() > 1e-3
        # legacy is point-wise: a pixel's output depends on that pixel's input only
        shifted = torch.roll(x, shifts=(3, 5), dims=(2, 3))
        assert torch.allclose(legacy(shifted), torch.roll(legacy(x), shifts=(3, 5), dims=(2, 3)), atol=1e-6)
        x2 = x.clone()
        x2[:, :, 0, 0] += 1.0
        assert torch.equal(legacy(x2)[:, :, 1:, 1:], legacy(x)[:, :, 1:, 1:])
        assert not torch.allclose(fixed(x2)[:, :, 1:, 1:], fixed(x)[:, :, 1:, 1:])


def test_forward_mode_does_not_apply_to_unets():
    unet = random_model("UNetClassic", init_features=4)
    with pytest.raises(IrnoError, match="'legacy' needs an FNO or TFNO, got UNetClassic"):
        BaseOperator(unet, "legacy")


# ----------------------------------------------------------------------------- local training


@pytest.mark.slow
def test_locally_trained_fno_beats_persistence(trained, waves):
    cfg, model_dir = trained
    valid = PreparedSplit(waves["valid"])
    base = load_base(cfg, model_dir)
    history = read_provenance(model_dir)["training"]["history"]
    assert [h["epoch"] for h in history] == [1, 2, 3]
    base_mse = one_step_mse(base, valid, 16, torch.device("cpu"))
    persistence_mse = one_step_mse(lambda x: persistence(x, 2), valid, 16, torch.device("cpu"))
    assert base_mse == pytest.approx(history[-1]["valid_mse"], rel=1e-5)
    assert base_mse < 0.5 * persistence_mse, (base_mse, persistence_mse)


@pytest.mark.slow
def test_pre_empted_training_resumes_to_the_same_weights(waves, tmp_path, monkeypatch):
    import irno.base.train as train_module

    cfg = tiny_cfg(epochs=2, batch_size=32, model_kwargs={"modes1": 2, "modes2": 2, "hidden_channels": 4})
    train, valid = PreparedSplit(waves["train"]), PreparedSplit(waves["valid"])
    train_base(cfg, train, valid, tmp_path / "straight")

    calls = {"n": 0}
    real = train_module.one_step_mse

    def dies_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:  # the job is killed after epoch 1 was saved
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module, "one_step_mse", dies_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train_base(cfg, train, valid, tmp_path / "resumed")
    assert (tmp_path / ".resumed.last.pt").is_file() and not (tmp_path / "resumed").exists()
    monkeypatch.setattr(train_module, "one_step_mse", real)
    train_base(cfg, train, valid, tmp_path / "resumed")
    assert not (tmp_path / ".resumed.last.pt").exists()
    a, b = load_model_dir("FNO", tmp_path / "straight"), load_model_dir("FNO", tmp_path / "resumed")
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))


# ----------------------------------------------------------------------------- base check


def measured(fixed: float, legacy: float, fixed_pooled: float = 0.5, legacy_pooled: float = 0.2) -> dict:
    return {
        "fixed": {"valid_vrmse": fixed, "test_vrmse_pooled_cf": fixed_pooled},
        "legacy": {"valid_vrmse": legacy, "test_vrmse_pooled_cf": legacy_pooled},
    }


def test_explicit_forward_wins_and_fails_on_the_wells_number():
    cfg = BaseConfig(pretrained="polymathic-ai/FNO-active_matter", forward="fixed", published_valid_vrmse=0.3157)
    forward, status, reason, message = choose_forward(cfg, measured(0.52, 0.318))
    assert (forward, status, reason) == ("fixed", "fail", "configured") and "set `base.forward: legacy`" in message
    legacy = BaseConfig(pretrained="a/b", forward="legacy", published_valid_vrmse=0.3157)
    assert choose_forward(legacy, measured(0.52, 0.318))[:2] == ("legacy", "pass")
    assert choose_forward(cfg, measured(0.9, 0.8))[1] == "warn"  # neither matches: other data or weights
    assert choose_forward(BaseConfig(pretrained="a/b"), measured(0.9, 0.8))[1] == "unchecked"
    # the paper's number only warns an explicit forward, which still runs
    paper = BaseConfig(pretrained="a/b", forward="fixed", published_single_pass_pooled=0.2)
    forward, status, _, message = choose_forward(paper, measured(0.9, 0.8))
    assert (forward, status) == ("fixed", "warn") and "forward 'legacy' would" in message
    unet = BaseConfig(model_class="UNetClassic", pretrained="a/b", forward="legacy", published_valid_vrmse=0.2609)
    assert choose_forward(unet, {"fixed": {"valid_vrmse": 0.27}})[:3] == ("fixed", "pass", "single forward")


def test_auto_takes_the_forward_that_reproduces_the_papers_number_first():
    both = BaseConfig(pretrained="a/b", forward="auto", published_single_pass_pooled=0.5, published_valid_vrmse=0.318)
    # the paper's pooled number (fixed: 0.5) decides, even where The Well's (legacy: 0.318) points elsewhere
    assert choose_forward(both, measured(0.52, 0.318))[:3] == ("fixed", "pass", "paper")
    well_only = BaseConfig(pretrained="a/b", forward="auto", published_valid_vrmse=0.318)
    assert choose_forward(well_only, measured(0.52, 0.318))[:3] == ("legacy", "pass", "well")
    nothing = BaseConfig(pretrained="a/b", forward="auto")
    assert choose_forward(nothing, measured(0.52, 0.318))[:3] == ("legacy", "unchecked", "lowest valid error")
    # neither forward within the tolerance: a failure showing both forwards' numbers
    far = BaseConfig(pretrained="a/b", forward="auto", published_single_pass_pooled=0.1017)
    forward, status, _, message = choose_forward(far, measured(0.52, 0.318, 0.35, 0.16))
    assert (forward, status) == ("legacy", "fail")
    assert "0.1017" in message and "'fixed' 0.3500" in message and "'legacy' 0.1600" in message


def test_check_vrmse_is_the_wells_in_physical_units(tiny_stores):
    split = PreparedSplit(tiny_stores["valid"])
    idx = np.arange(len(split))
    got = per_field_vrmse({"persistence": lambda x: persistence(x, 11)}, split, idx, 5, torch.device("cpu"))[
        "persistence"
    ]
    x, y = split.batch(idx)
    std, mean = split.channel_std[None, :, None, None], split.channel_mean[None, :, None, None]
    y_hat, y = x[:, -11:].double().numpy() * std + mean, y.double().numpy() * std + mean  # (N, F, H, W)
    want = np.sqrt(((y_hat - y) ** 2).mean(axis=(2, 3)) / (y.var(axis=(2, 3), ddof=1) + 1e-7)).mean(
        0
    )  # The Well's VRMSE
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_base_check_measures_both_forwards_in_both_conventions(trained, waves, tmp_path):
    cfg, model_dir = trained
    valid = PreparedSplit(waves["valid"])
    report = check_base(cfg, model_dir, valid, tmp_path / "plain.json", test=valid)
    assert report["verdict"] == "unchecked" and report["forward"] == "fixed" and report["chosen_by"] == "configured"
    assert report["valid_samples"] == report["valid_samples_split"] == report["test_samples"] == len(valid)
    forwards = report["forwards"]
    fixed, legacy = forwards["fixed"]["valid_vrmse"], forwards["legacy"]["valid_vrmse"]
    assert fixed < report["persistence_valid_vrmse"] and abs(fixed - legacy) > 0.2 * fixed
    assert set(forwards["fixed"]["valid_vrmse_per_field"]) == set(valid.field_names)
    pooled = {mode: forwards[mode]["test_vrmse_pooled_cf"] for mode in ("fixed", "legacy")}
    assert abs(pooled["fixed"] - pooled["legacy"]) > 0.05 * pooled["fixed"]

    # Pretend The Well published the legacy number: the configured (fixed) forward misses it.
    wrong = tiny_cfg(published_valid_vrmse=legacy)
    with pytest.raises(IrnoError, match="set `base.forward: legacy`"):
        check_base(wrong, model_dir, valid, tmp_path / "strict.json")
    assert not (tmp_path / "strict.json.tmp").exists()
    lenient = tiny_cfg(published_valid_vrmse=legacy, strict=False)
    report = check_base(lenient, model_dir, valid, tmp_path / "lenient.json")
    assert report["verdict"] == "fail" and "set `base.forward: legacy`" in report["message"]
    assert json.loads((tmp_path / "lenient.json").read_text())["message"] == report["message"]
    # subsampling only when configured, and said in the output
    report = check_base(tiny_cfg(check_max_samples=3), model_dir, valid, tmp_path / "subsampled.json")
    assert report["valid_samples"] == 3 and report["valid_samples_split"] == len(valid)


@pytest.mark.parametrize("mode", ["fixed", "legacy"])
def test_auto_picks_the_forward_of_the_papers_number_and_the_cache_runs_it(trained, waves, tmp_path, mode):
    cfg, model_dir = trained
    valid = PreparedSplit(waves["valid"])
    numbers = check_base(cfg, model_dir, valid, tmp_path / "numbers.json", test=valid)["forwards"]
    paper = numbers[mode]["test_vrmse_pooled_cf"] * 1.02  # the paper's number, 2 % off one forward's
    auto = tiny_cfg(forward="auto", published_single_pass_pooled=paper, published_source="a test")
    report = check_base(auto, model_dir, valid, tmp_path / "check.json", test=valid)
    assert (report["forward"], report["verdict"], report["chosen_by"]) == (mode, "pass", "paper")
    assert report["published"] == {"valid_vrmse": None, "single_pass_pooled": paper, "source": "a test"}
    # the cache runs the decided forward and records it
    cache = cache_base(auto, model_dir, valid, tmp_path / "cache", forward=checked_forward(tmp_path / "check.json"))
    assert cache.meta["base"]["forward"] == mode
    x, y = valid.batch(np.arange(len(valid)))
    with torch.no_grad():
        want = BaseOperator(load_model_dir("FNO", model_dir), mode)(x)
    torch.testing.assert_close(cache.batch(np.arange(len(valid))), want, rtol=1e-5, atol=1e-6)
    # auto cannot run before the check decided
    with pytest.raises(IrnoError, match="'auto' is decided by the base check"):
        cache_base(auto, model_dir, valid, tmp_path / "undecided")


def test_a_base_trained_in_the_legacy_forward_is_what_the_published_checkpoints_are(waves, tmp_path):
    """train_forward: legacy trains lifting -> projection alone (the_well <= 1.1.0); the check finds it."""
    train, valid = PreparedSplit(waves["train"]), PreparedSplit(waves["valid"])
    cfg = tiny_cfg(train_forward="legacy", forward="auto")
    train_base(cfg, train, valid, tmp_path / "model")
    assert read_provenance(tmp_path / "model")["training"]["forward"] == "legacy"
    report = check_base(cfg, tmp_path / "model", valid, tmp_path / "check.json")
    assert (report["forward"], report["chosen_by"]) == ("legacy", "lowest valid error")
    # its Fourier blocks kept their initial weights: the same model with the fixed forward is another function
    seed_everything(cfg.seed)  # as train_base does before it builds the model
    untrained = build_model(cfg, 2 * train.n_steps_input, 2, train.grid).model.fno_blocks.state_dict()
    trained = load_model_dir("FNO", tmp_path / "model").model.fno_blocks.state_dict()
    for name, value in untrained.items():
        torch.testing.assert_close(trained[name], value)
    with pytest.raises(IrnoError, match="base.train_forward"):
        BaseConfig(pretrained="a/b", train_forward="legacy")


def test_auto_stops_when_neither_forward_reproduces_the_papers_number(trained, waves, tmp_path):
    cfg, model_dir = trained
    valid = PreparedSplit(waves["valid"])
    far = tiny_cfg(forward="auto", published_single_pass_pooled=1e-3)
    with pytest.raises(IrnoError, match=r"no forward reproduces .*'fixed' .*'legacy' "):
        check_base(far, model_dir, valid, tmp_path / "check.json", test=valid)
    report = check_base(tiny_cfg(forward="auto", published_single_pass_pooled=1e-3, strict=False), model_dir, valid,
                        tmp_path / "lenient.json", test=valid)  # fmt: skip
    assert report["verdict"] == "fail" and report["forward"] in ("fixed", "legacy")


# ----------------------------------------------------------------------------- prediction cache


def test_cache_equals_the_base_sample_by_sample(trained, waves, tmp_path):
    cfg, model_dir = trained
    split = PreparedSplit(waves["valid"])
    cache = cache_base(tiny_cfg(cache_batch_size=3), model_dir, split, tmp_path / "cache")
    base = load_base(cfg, model_dir)
    assert len(cache) == len(split) and cache.meta["dtype"] == "float32"
    with torch.no_grad():
        for i in range(len(split)):  # one at a time: equal up to float32 summation order
            torch.testing.assert_close(cache[i], base(split[i]["x"][None])[0], rtol=1e-5, atol=1e-6, msg=f"sample {i}")
        x, _ = split.batch(range(3, 6))  # the build's own batch: the same bits
        assert torch.equal(cache.batch(range(3, 6)), base(x))
    data = RefinementDataset(
        split, BasePredictionCache.open(tmp_path / "cache", expect=expected_meta(cfg, model_dir, split))
    )
    x, h0, y = data.batch([4, 1])
    assert torch.equal(h0[0], cache[4]) and torch.equal(x[1], split[1]["x"]) and torch.equal(y[0], data[4]["y"])
    assert data.field_names == split.field_names == ["a", "b"] and data.grid == (16, 16)
    with pytest.raises(IrnoError, match="was not built from the store .*store.split is 'valid', expected 'train'"):
        RefinementDataset(PreparedSplit(waves["train"]), cache)


def test_stale_cache_is_refused(trained, waves, tmp_path):
    cfg, model_dir = trained
    split = PreparedSplit(waves["valid"])
    cache_base(cfg, model_dir, split, tmp_path / "cache")
    other_weights = tmp_path / "other"
    torch.manual_seed(1)
    save_base(build_model(cfg, 8, 2, (16, 16)), other_weights, {"model_class": "FNO", "source": "train"})
    stale = {
        "forward": (tiny_cfg(forward="legacy"), model_dir, "base.forward is 'fixed', expected 'legacy'"),
        "weights": (cfg, other_weights, "base.weights_sha256 is"),
        "dtype": (tiny_cfg(cache_dtype="float16"), model_dir, "dtype is 'float32', expected 'float16'"),
    }
    for other_cfg, other_dir, message in stale.values():
        with pytest.raises(IrnoError, match=f"stale base-prediction cache, refusing it: .*{message}"):
            BasePredictionCache.open(tmp_path / "cache", expect=expected_meta(other_cfg, other_dir, split))
    expect = expected_meta(cfg, model_dir, split)
    with pytest.raises(IrnoError, match="base.revision is None, expected 'v2'"):
        BasePredictionCache.open(tmp_path / "cache", expect={**expect, "base": {**expect["base"], "revision": "v2"}})
    BasePredictionCache.open(tmp_path / "cache", expect=expect)  # the matching one opens


def test_interrupted_cache_build_resumes_to_the_same_bytes(trained, waves, tmp_path):
    cfg, model_dir = trained
    split = PreparedSplit(waves["train"])
    base = load_base(cfg, model_dir)
    BasePredictionCache.build(base, split, tmp_path / "straight", batch_size=5)

    class DiesAfterTwoBatches(BaseOperator):
        calls = 0

        def forward(self, x):
            type(self).calls += 1
            if type(self).calls == 3:
                raise KeyboardInterrupt  # pre-emption in the middle of the build
            return super().forward(x)

    dying = DiesAfterTwoBatches(base.model, base.forward_mode)
    dying.identity = base.identity
    with pytest.raises(KeyboardInterrupt):
        BasePredictionCache.build(dying, split, tmp_path / "resumed", batch_size=5)
    assert not (tmp_path / "resumed").exists()
    assert json.loads((tmp_path / ".resumed.partial" / "progress.json").read_text())["done"] == 10
    with pytest.raises(IrnoError, match="unfinished build is in .*resumed.partial"):
        BasePredictionCache.open(tmp_path / "resumed")

    class Counting(BaseOperator):
        calls = 0

        def forward(self, x):
            type(self).calls += 1
            return super().forward(x)

    counting = Counting(base.model, base.forward_mode)
    counting.identity = base.identity
    BasePredictionCache.build(counting, split, tmp_path / "resumed", batch_size=5)
    assert Counting.calls == 11  # samples 10..63 in batches of 5: resumed, not restarted
    assert (tmp_path / "resumed" / "h0.npy").read_bytes() == (tmp_path / "straight" / "h0.npy").read_bytes()
    assert not (tmp_path / ".resumed.partial").exists()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_reduced_precision_cache_reports_its_error(trained, waves, tmp_path, dtype):
    cfg, model_dir = trained
    split = PreparedSplit(waves["valid"])
    full = cache_base(cfg, model_dir, split, tmp_path / "f32")
    reduced = cache_base(tiny_cfg(cache_dtype=dtype), model_dir, split, tmp_path / dtype)
    error = reduced.meta["quantisation_error"]
    diff = (reduced.batch(range(len(split))) - full.batch(range(len(split)))).double()
    assert error["max_abs"] == pytest.approx(diff.abs().max().item())
    assert error["rms"] == pytest.approx(diff.square().mean().sqrt().item())
    assert 0 < error["relative_rms"] < (1e-3 if dtype == "float16" else 1e-2)
    assert reduced[0].dtype == torch.float32


def test_shared_fixtures_give_refinement_datasets(tiny_stores, tiny_caches):
    data = RefinementDataset(PreparedSplit(tiny_stores["test"]), BasePredictionCache.open(tiny_caches["test"]))
    item = data[3]
    assert item["x"].shape == (44, 32, 32) and item["h0"].shape == item["y"].shape == (11, 32, 32)
    assert torch.isfinite(item["h0"]).all() and item["h0"].std() > 0


# ----------------------------------------------------------------------------- CLI


def test_base_cli_train_check_cache(waves, tmp_path, capsys):
    settings = {
        "model_class": "FNO",
        "source": "train",
        "model_kwargs": {"modes1": 2, "modes2": 2, "hidden_channels": 4},
        "epochs": 1,
        "device": "cpu",
    }
    write_yaml(tmp_path / "base.yaml", settings)
    assert from_dict(BaseConfig, settings).epochs == 1
    stores = {k: str(v) for k, v in waves.items()}
    model = str(tmp_path / "model")
    assert (
        irno_main(
            [
                "base",
                "train",
                "--config",
                str(tmp_path / "base.yaml"),
                "--train",
                stores["train"],
                "--valid",
                stores["valid"],
                "--out",
                model,
            ]
        )
        == 0
    )
    assert (
        irno_main(
            [
                "base",
                "check",
                "--config",
                str(tmp_path / "base.yaml"),
                "--model",
                model,
                "--valid",
                stores["valid"],
                "--out",
                str(tmp_path / "check.json"),
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "check.json").read_text())["verdict"] == "unchecked"
    assert (
        irno_main(
            [
                "base",
                "cache",
                "--config",
                str(tmp_path / "base.yaml"),
                "--model",
                model,
                "--store",
                stores["valid"],
                "--out",
                str(tmp_path / "cache"),
            ]
        )
        == 0
    )
    assert len(BasePredictionCache.open(tmp_path / "cache")) == len(PreparedSplit(waves["valid"]))
    write_yaml(tmp_path / "bad.yaml", {**settings, "epochs": "many"})
    assert irno_main(["base", "fetch", "--config", str(tmp_path / "bad.yaml"), "--out", model]) == 1
    assert "bad.yaml: config key 'epochs': expected an integer, got 'many'" in capsys.readouterr().err
