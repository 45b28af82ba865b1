"""The frozen base operator T_base: one of The Well's benchmark models, with its forward mode.

A base always runs from a *model directory* that `PyTorchModelHubMixin.save_pretrained` wrote
(``config.json``, ``model.safetensors``) plus ``irno_base.json``, our provenance record (model
class, where the weights came from, their SHA-256). `fetch_base` fills one from the Hub or a local
directory, `irno.base.train` by training. Weights only ever load from safetensors.

Forward modes: ``legacy`` reproduces, without touching the_well, the forward the published FNO/TFNO
checkpoints were trained with (``projection(lifting(x))``); ``fixed`` is the installed (1.2.0)
forward. Other classes have one forward.

Detail: docs/method.md#the-fno-forward, docs/outputs.md#base-operators-basedatasetbase
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

from irno import IrnoError, log
from irno.config import BaseConfig
from irno.files import atomic_dir, file_sha256, read_json, write_json

MODEL_CLASSES = ("FNO", "TFNO", "UNetClassic", "UNetConvNext")
FOURIER_CLASSES = ("FNO", "TFNO")  # the classes whose forward mode matters
PROVENANCE = "irno_base.json"
WEIGHTS = "model.safetensors"


def model_class(name: str) -> type:
    if name not in MODEL_CLASSES:
        raise IrnoError(f"config key 'base.model_class': {name!r} is not one of {', '.join(MODEL_CLASSES)}")
    from the_well.benchmark import models  # imports timm: slow, so only when a model is needed

    return getattr(models, name)


def training_forward(cfg: BaseConfig) -> str:
    """The forward local training (source: train) runs: base.train_forward, else the configured
    forward ("fixed" for auto: the base check then finds it is the one that fits)."""
    if cfg.model_class not in FOURIER_CLASSES:
        return "fixed"
    return cfg.train_forward or ("fixed" if cfg.forward == "auto" else cfg.forward)


def effective_forward(cfg: BaseConfig) -> str:
    """The forward mode a base of `cfg` runs in before any check: `cfg.forward` for FNO/TFNO, "fixed"
    (the only one) otherwise. "auto" is decided by the base check (irno.base.check) and cannot be
    run before it, except in local training, where the installed ("fixed") forward is trained."""
    if cfg.model_class not in FOURIER_CLASSES:
        return "fixed"
    if cfg.forward == "auto":
        raise IrnoError(
            "config key 'base.forward': 'auto' is decided by the base check; pass its base_check.json "
            "(irno base cache --check) or set legacy or fixed"
        )
    return cfg.forward


class BaseOperator(nn.Module):
    """A Well benchmark model in a chosen forward mode: (B, T_in*F, H, W) -> (B, F, H, W).

    Inputs and outputs are in the normalised units of the prepared stores (h0 = T_base(x)).
    """

    def __init__(self, model: nn.Module, forward_mode: str = "fixed"):
        super().__init__()
        if forward_mode not in ("fixed", "legacy"):
            raise IrnoError(f"config key 'base.forward': {forward_mode!r} is not one of 'fixed', 'legacy'")
        if forward_mode == "legacy" and not hasattr(getattr(model, "model", None), "lifting"):
            raise IrnoError(f"forward mode 'legacy' needs an FNO or TFNO, got {type(model).__name__}")
        self.model = model
        self.forward_mode = forward_mode
        self.identity: dict = {}  # what a prediction cache records about this base (load_base fills it)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.forward_mode == "legacy":
            inner = self.model.model  # neuralop FNO/TFNO; the_well <= 1.1.0 skipped its Fourier blocks
            return inner.projection(inner.lifting(x))  # (B, hidden, H, W) -> (B, F, H, W)
        return self.model(x)


def build_model(cfg: BaseConfig, in_channels: int, out_channels: int, grid: tuple[int, int]) -> nn.Module:
    """A freshly initialised model for local training; `cfg.model_kwargs` are the constructor's extras."""
    cls = model_class(cfg.model_class)
    try:
        return cls(
            dim_in=in_channels,
            dim_out=out_channels,
            n_spatial_dims=len(grid),
            spatial_resolution=tuple(grid),
            **cfg.model_kwargs,
        )
    except TypeError as e:
        raise IrnoError(
            f"config key 'base.model_kwargs': {cfg.model_kwargs!r} do not fit {cfg.model_class} ({e})"
        ) from None


def save_base(model: nn.Module, out_dir: str | os.PathLike, provenance: dict) -> Path:
    """save_pretrained into `out_dir` atomically, with the provenance record and the weights' hash."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        config = read_json(tmp / "config.json")
        write_json(tmp / PROVENANCE, {**provenance, "config": config, "weights_sha256": file_sha256(tmp / WEIGHTS)})
    return out_dir


def load_model_dir(class_name: str, model_dir: str | os.PathLike) -> nn.Module:
    """`from_pretrained` on a local save_pretrained directory, strictly (every weight must fit)."""
    model_dir = Path(model_dir)
    for name in ("config.json", WEIGHTS):
        if not (model_dir / name).is_file():
            others = ", ".join(sorted(p.name for p in model_dir.iterdir())) if model_dir.is_dir() else "folder missing"
            raise IrnoError(
                f"{model_dir / name}: missing (a model directory holds config.json and {WEIGHTS}; found: {others})"
            )
    try:
        # strict=True: the mixin's default (False) would silently keep random weights for keys that do not match
        return model_class(class_name).from_pretrained(str(model_dir), strict=True)
    except (RuntimeError, TypeError, ValueError, KeyError, OSError) as e:
        raise IrnoError(f"{model_dir}: does not load as a {class_name} ({type(e).__name__}: {e})") from None


def read_provenance(model_dir: str | os.PathLike) -> dict:
    path = Path(model_dir) / PROVENANCE
    if not path.is_file():
        raise IrnoError(f"{path}: missing; model directories are made by `irno base fetch` or `irno base train`")
    return read_json(path)


def _is_hub_id(text: str) -> bool:
    parts = text.split("/")
    return len(parts) == 2 and all(parts) and not text.startswith((".", "~"))


def _hub_snapshot(repo_id: str, revision: str | None, class_name: str) -> Path:
    """Download config.json and the safetensors weights of a Hub repo; the folder is named by the commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    at = f"{repo_id}@{revision or 'main'}"
    try:
        folder = snapshot_download(repo_id, revision=revision, allow_patterns=["config.json", WEIGHTS])
    except RevisionNotFoundError:
        raise IrnoError(f"config key 'base.revision': {revision!r} does not exist in the Hub repo {repo_id}") from None
    except RepositoryNotFoundError:
        raise IrnoError(
            f"config key 'base.pretrained': no Hub repo {repo_id!r} (and no local directory of that name)"
        ) from None
    except (LocalEntryNotFoundError, OSError, ConnectionError) as e:
        raise IrnoError(
            f"cannot reach the Hugging Face Hub for {at} and it is not in the local Hub cache "
            f"({type(e).__name__}: {e}). "
            "Run `irno base fetch` where the internet is reachable, or on such a machine save the model with "
            f"`{class_name}.from_pretrained('{repo_id}', revision={revision!r}).save_pretrained(DIR)` "
            "(the_well.benchmark.models), copy DIR here "
            "and set `base.pretrained: DIR` (a local save_pretrained directory needs no network)."
        ) from None
    return Path(folder)


def fetch_base(cfg: BaseConfig, out_dir: str | os.PathLike) -> Path:
    """Copy a pretrained base into a model directory, recording the revision it resolved to."""
    if cfg.source != "pretrained":
        raise IrnoError(
            f"config key 'base.source': {cfg.source!r}; `irno base fetch` needs 'pretrained' (use `irno base train`)"
        )
    local = Path(os.path.expanduser(cfg.pretrained))
    if local.is_dir():
        if cfg.revision:
            log.warning("base.revision %r ignored: base.pretrained is the local directory %s", cfg.revision, local)
        model, origin, resolved = load_model_dir(cfg.model_class, local), "local", None
    elif _is_hub_id(cfg.pretrained):
        folder = _hub_snapshot(cfg.pretrained, cfg.revision, cfg.model_class)
        if not (folder / WEIGHTS).is_file():
            raise IrnoError(
                f"Hub repo {cfg.pretrained} at revision {folder.name} has no {WEIGHTS}; only safetensors weights are "
                "loaded (pickled checkpoints can execute code)"
            )
        model, origin, resolved = load_model_dir(cfg.model_class, folder), "hub", folder.name  # snapshots/<commit>
    else:
        raise IrnoError(
            f"config key 'base.pretrained': {cfg.pretrained!r} is neither a local directory nor a Hub id (owner/name)"
        )
    provenance = {
        "model_class": cfg.model_class,
        "source": origin,
        "pretrained": cfg.pretrained,
        "revision": cfg.revision,
        "resolved_revision": resolved,
    }
    log.info("base %s from %s (%s) -> %s", cfg.model_class, cfg.pretrained, resolved or "local", out_dir)
    return save_base(model, out_dir, provenance)


def base_identity(cfg: BaseConfig, provenance: dict, forward: str) -> dict:
    """What makes two bases the same: class, origin, revision, weights and the forward that runs."""
    return {
        "model_class": cfg.model_class,
        "pretrained": provenance.get("pretrained", ""),
        "revision": provenance.get("resolved_revision") or provenance.get("revision"),
        "weights_sha256": provenance["weights_sha256"],
        "forward": forward,
    }


def load_base(
    cfg: BaseConfig, model_dir: str | os.PathLike, device: torch.device | str = "cpu", forward: str | None = None
) -> BaseOperator:
    """The frozen base of `cfg` from its model directory: eval mode, no gradients, forward mode applied.

    `forward`: the mode to run (the base check's decision for ``forward: auto``); default
    `effective_forward(cfg)`.
    """
    provenance = read_provenance(model_dir)
    problems = []
    if provenance.get("model_class") != cfg.model_class:
        problems.append(
            f"model class {provenance.get('model_class')!r}, the config says base.model_class={cfg.model_class!r}"
        )
    if cfg.source == "pretrained" and (provenance.get("pretrained"), provenance.get("revision")) != (
        cfg.pretrained,
        cfg.revision,
    ):
        problems.append(
            f"fetched from {provenance.get('pretrained')!r} at revision {provenance.get('revision')!r}, "
            "the config says "
            f"base.pretrained={cfg.pretrained!r}, base.revision={cfg.revision!r} (re-run `irno base fetch`)"
        )
    if cfg.source == "train" and provenance.get("source") != "train":
        problems.append(
            f"a {provenance.get('source')!r} model, the config says base.source='train' (re-run `irno base train`)"
        )
    if problems:
        raise IrnoError(f"{model_dir}: " + "; ".join(problems))
    if file_sha256(Path(model_dir) / WEIGHTS) != provenance.get("weights_sha256"):
        raise IrnoError(f"{Path(model_dir) / WEIGHTS}: weights differ from those recorded in {PROVENANCE}")
    forward = forward or effective_forward(cfg)
    if cfg.model_class not in FOURIER_CLASSES:
        forward = "fixed"
    op = BaseOperator(load_model_dir(cfg.model_class, model_dir), forward)
    op.identity = base_identity(cfg, provenance, forward)
    return op.to(device).eval().requires_grad_(False)


def check_channels(op: BaseOperator, in_channels: int, out_channels: int, where: str) -> None:
    """The model's recorded dim_in/dim_out must match the data (else the first conv fails cryptically)."""
    config = getattr(op.model, "_hub_mixin_config", None) or {}
    got = (config.get("dim_in"), config.get("dim_out"))
    if None not in got and got != (in_channels, out_channels):
        raise IrnoError(f"the base maps {got[0]} -> {got[1]} channels, {where} needs {in_channels} -> {out_channels}")
