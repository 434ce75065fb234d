"""Training configuration: a dataclass read from TOML, overridden by ``key=value`` arguments."""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError
from ferkit.train.augment import AugmentConfig


@dataclass
class TrainConfig:
    arch: str = "paper_net"
    model: dict[str, Any] = field(default_factory=dict)  # keyword arguments of the architecture
    split: str = "canonical"  # canonical | paper
    split_seed: int = 0
    labels: str = "fer2013"  # fer2013 (the CSV's labels) | ferplus (FER+ vote distributions)
    ferplus_votes: str = ""  # the FER+ votes file; "" looks beside the data (shared layout)
    epochs: int = 50
    batch_size: int = 64  # global batch (divided among DDP ranks)
    lr: float = 1e-3  # Adam's default
    optimizer: str = "adam"  # adam (L2 weight decay) | adamw (decoupled weight decay)
    weight_decay: float = 0.0
    schedule: str = "none"  # none | cosine | plateau
    warmup_epochs: float = 0.0
    min_lr: float = 0.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0  # exponential moving average of the weights per step; 0 disables it
    bn_recalibrate: int = 0  # re-estimate batch-norm statistics on N clean training faces; 0: off
    init_from: str = ""  # start from these weights (a shipped model name or .safetensors path)
    teachers: list[str] = field(default_factory=list)  # distil from these models' ensemble
    distill_alpha: float = 0.5  # weight of the distillation term (1 - alpha: the labels)
    distill_temperature: float = 2.0
    test_at_end: bool = True  # score the best epoch on the test split; off while choosing models
    patience: int = 10  # early stopping on validation accuracy; 0 disables it
    seed: int = 0
    amp: str = "auto"  # auto | bf16 | fp16 | off
    compile: bool = False
    threads: int = 0  # 0: leave torch's default
    eval_batch_size: int = 512
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    limit_train: int = 0  # use only the first N training images (tests, quick checks)
    limit_val: int = 0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "schedule": ("none", "cosine", "plateau"),
    "optimizer": ("adam", "adamw"),
    "amp": ("auto", "bf16", "fp16", "off"),
    "split": ("canonical", "paper"),
    "labels": ("fer2013", "ferplus"),
}


def _coerce(text: str) -> Any:
    """Parse an override value as TOML (numbers, booleans, lists), else keep it as a string."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    keys = dotted.split(".")
    for k in keys[:-1]:
        target = target.setdefault(k, {})
    target[keys[-1]] = value


def build_config(raw: dict[str, Any]) -> TrainConfig:
    raw = dict(raw)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = set(raw) - known
    if unknown:
        raise FerkitError(f"unknown config key(s): {', '.join(sorted(unknown))}")
    aug = raw.pop("augment", {})
    if not isinstance(aug, dict):
        raise FerkitError(f"augment={aug!r} must be a table of augment.* settings, e.g. augment.zoom=0.1")
    aug_known = {f.name for f in dataclasses.fields(AugmentConfig)}
    if set(aug) - aug_known:
        raise FerkitError(f"unknown augment key(s): {', '.join(sorted(set(aug) - aug_known))}")
    cfg = TrainConfig(**raw, augment=AugmentConfig(**aug))
    for key, allowed in CHOICES.items():
        if getattr(cfg, key) not in allowed:
            raise FerkitError(f"{key}={getattr(cfg, key)!r} is not one of {', '.join(allowed)}")
    check_types(cfg)
    if not 0.0 <= cfg.distill_alpha <= 1.0 or cfg.distill_temperature <= 0:
        raise FerkitError("distill_alpha must be in [0, 1] and distill_temperature positive")
    if not 0.0 <= cfg.augment.cutmix <= 1.0 or not 0.0 <= cfg.augment.erase <= 1.0:
        raise FerkitError("augment.cutmix and augment.erase are probabilities in [0, 1]")
    if cfg.augment.cutmix and cfg.teachers:
        raise FerkitError("augment.cutmix with teachers is not supported: the cached teacher "
                          "outputs are for whole faces")
    if cfg.bn_recalibrate < 0:
        raise FerkitError(f"bn_recalibrate={cfg.bn_recalibrate} must be a number of images >= 0")
    if not 0.0 <= cfg.ema_decay < 1.0:
        raise FerkitError(f"ema_decay={cfg.ema_decay} must be in [0, 1)")
    return cfg


def check_types(cfg: TrainConfig) -> None:
    """One-line errors for values of the wrong kind (``teachers=paper`` instead of ``["paper"]``)."""
    fields = [(f.name, getattr(cfg, f.name), f.type) for f in dataclasses.fields(TrainConfig)]
    fields += [(f"augment.{f.name}", getattr(cfg.augment, f.name), f.type)
               for f in dataclasses.fields(AugmentConfig)]
    for name, value, kind in fields:
        if kind == "float" and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise FerkitError(f"{name}={value!r} must be a number")
        if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            raise FerkitError(f"{name}={value!r} must be an integer")
        if kind == "str" and not isinstance(value, str):
            raise FerkitError(f"{name}={value!r} must be a string")
        if kind == "bool" and not isinstance(value, bool):
            raise FerkitError(f"{name}={value!r} must be true or false")
    if not isinstance(cfg.teachers, list) or not all(isinstance(t, str) for t in cfg.teachers):
        raise FerkitError(f"teachers={cfg.teachers!r} must be a list of model names, e.g. [\"paper\"]")


def load_config(path: str | Path | None, overrides: list[str] = ()) -> TrainConfig:
    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FerkitError(f"{path}: no such config file")
        try:
            raw = tomllib.loads(path.read_text())
        except tomllib.TOMLDecodeError as exc:
            raise FerkitError(f"{path}: invalid TOML: {exc}") from None
    for item in overrides:
        if "=" not in item:
            raise FerkitError(f"override {item!r} must look like key=value (e.g. epochs=5)")
        key, value = item.split("=", 1)
        _set(raw, key.strip(), _coerce(value.strip()))
    return build_config(raw)
