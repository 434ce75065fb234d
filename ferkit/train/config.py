"""Training configuration: a dataclass read from TOML, overridden by ``key=value`` arguments."""

from __future__ import annotations

import dataclasses
import difflib
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ferkit.errors import FerkitError
from ferkit.models import model_options, takes_any_option
from ferkit.train.augment import AugmentConfig
from ferkit.train.keys import key


@dataclass
class TrainConfig:
    """Every key of a training config. Its help lives with each field (:func:`key`):
    ``ferkit train --list-keys`` prints them, with the ``model.*`` keys of the architecture."""

    arch: str = key("paper_net", "the architecture; its options are the model.* keys")
    model: dict[str, Any] = key({}, "keyword arguments of the architecture (the model.* keys)")
    split: str = key("canonical", "canonical (Training/PublicTest/PrivateTest) | paper (80/10/10)")
    split_seed: int = key(0, "seed of the paper split's random 80/10/10 draw")
    labels: str = key("fer2013", "fer2013 (the CSV's labels) | ferplus (FER+ vote distributions)")
    ferplus_votes: str = key("", "the FER+ votes file; \"\" looks beside the data (shared layout)")
    epochs: int = key(50, "the most epochs to train (early stopping may end sooner)")
    batch_size: int = key(64, "global batch (divided among DDP ranks)")
    lr: float = key(1e-3, "learning rate, the peak of a schedule (1e-3: Adam's default)")
    optimizer: str = key("adam", "adam (L2 weight decay) | adamw (decoupled weight decay)")
    weight_decay: float = key(0.0, "weight decay (adamw: not on norms and biases)")
    schedule: str = key("none", "learning-rate schedule after warmup: none | cosine | plateau")
    warmup_epochs: float = key(0.0, "epochs of linear warmup from 0 to lr")
    min_lr: float = key(0.0, "the learning rate at the end of the cosine schedule")
    label_smoothing: float = key(0.0, "label smoothing of the cross-entropy")
    logit_adjust: float = key(0.0, "logit adjustment tau (Menon et al. 2021): the loss sees logits + "
                                   "tau*log(training prior), so tau=1 leaves the network's own logits "
                                   "prior-free (balanced); 0: plain cross-entropy")
    ema_decay: float = key(0.0, "exponential moving average of the weights per step; 0 disables it")
    bn_recalibrate: int = key(0, "re-estimate batch-norm statistics on N clean training faces; 0: off")
    init_from: str = key("", "start from these weights: a pin such as \"default@a3c3f3fe06a8\" (a shipped "
                             "name moves with releases; `ferkit model pin` fetches an old one), a "
                             ".safetensors path or a run folder")
    teachers: list[str] = key([], "distil from these models' ensemble (pins, weights files or run folders, "
                                  "as init_from)")
    distill_alpha: float = key(0.5, "weight of the distillation term (1 - alpha: the labels)")
    distill_temperature: float = key(2.0, "softmax temperature of the distillation term")
    test_at_end: bool = key(True, "score the best epoch on the test split; off while choosing models")
    patience: int = key(10, "early stopping on validation accuracy; 0 disables it")
    seed: int = key(0, "seed of the weights, shuffling, augmentation and dropout")
    amp: str = key("auto", "mixed precision: auto | bf16 | fp16 | off")
    compile: str = key("auto", "torch.compile the step: auto (CUDA only; on CPUs eager measured "
                               "faster) | true | false")
    channels_last: str = key("auto", "channels-last memory: auto (on CPUs) | true | false")
    threads: int = key(0, "PyTorch's CPU threads for the step; 0: every core this process may use")
    eval_batch_size: int = key(512, "batch size of validation and testing")
    augment: AugmentConfig = key(AugmentConfig, "augmentation (the augment.* keys)")
    limit_train: int = key(0, "use only the first N training images (tests, quick checks); 0: all")
    limit_val: int = key(0, "use only the first N validation images; 0: all")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


CHOICES = {
    "schedule": ("none", "cosine", "plateau"),
    "optimizer": ("adam", "adamw"),
    "amp": ("auto", "bf16", "fp16", "off"),
    "split": ("canonical", "paper"),
    "labels": ("fer2013", "ferplus"),
    "compile": ("auto", "true", "false"),
    "channels_last": ("auto", "true", "false"),
}
SWITCHES = ("compile", "channels_last")  # auto | true | false; TOML's true/false are accepted


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
    for name in SWITCHES:
        if isinstance(raw.get(name), bool):
            raw[name] = "true" if raw[name] else "false"
    check_known("config key(s)", raw, [f.name for f in dataclasses.fields(TrainConfig)])
    aug = raw.pop("augment", {})
    if not isinstance(aug, dict):
        raise FerkitError(f"augment={aug!r} must be a table of augment.* settings, e.g. augment.zoom=0.1")
    check_known("augment key(s)", aug, [f.name for f in dataclasses.fields(AugmentConfig)])
    cfg = TrainConfig(**raw, augment=AugmentConfig(**aug))
    if not isinstance(cfg.arch, str):
        raise FerkitError(f"arch={cfg.arch!r} must be the name of an architecture, e.g. \"paper_net\"")
    if not isinstance(cfg.model, dict):
        raise FerkitError(f"model={cfg.model!r} must be a table of model.* settings, e.g. model.dropout=0.2")
    if not takes_any_option(cfg.arch):
        check_known(f"model key(s) of {cfg.arch}", cfg.model, list(model_options(cfg.arch)))
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise FerkitError(f"{name}={getattr(cfg, name)!r} is not one of {', '.join(allowed)}")
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


def check_known(what: str, given: dict[str, Any], known: list[str]) -> None:
    """A one-line error naming the keys of ``given`` that are not ``known``, each with the known
    key it most likely means (a typo: ``epcohs`` -> ``epochs``)."""
    unknown = sorted(set(given) - set(known))
    if not unknown:
        return
    named = []
    for name in unknown:
        near = difflib.get_close_matches(name, known, n=1)
        named.append(f"{name} (did you mean {near[0]!r}?)" if near else name)
    raise FerkitError(f"unknown {what}: {', '.join(named)}; `ferkit train --list-keys` lists them")


def list_keys(arch: str = "paper_net") -> list[tuple[str, Any, str]]:
    """Every config key as (name, default, help), ``model.*`` (of ``arch``) and ``augment.*``
    keys named as in a ``key=value`` override."""
    rows: list[tuple[str, Any, str]] = []
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        if f.name == "model":
            rows += [(f"model.{name}", default, text)
                     for name, (default, text) in model_options(arch).items()]
        elif f.name == "augment":
            rows += [(f"augment.{a.name}", getattr(defaults.augment, a.name), a.metadata.get("help", ""))
                     for a in dataclasses.fields(AugmentConfig)]
        else:
            rows.append((f.name, getattr(defaults, f.name), f.metadata.get("help", "")))
    return rows


def toml_value(value: Any) -> str:
    """A default as it is written in TOML (and in a ``key=value`` override)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return repr(value)


def format_keys(arch: str = "paper_net") -> str:
    """The text of ``ferkit train --list-keys``: ``key = default  # help``, one key a line."""
    rows = [(f"{name} = {toml_value(default)}", text) for name, default, text in list_keys(arch)]
    width = max(len(left) for left, _ in rows)
    head = (f"# ferkit train's config keys and their defaults (arch {arch}): in a TOML config (model.* "
            "and augment.* in its [model] and [augment] tables) or as key=value after the command")
    return "\n".join([head] + [f"{left:<{width}}  # {text}" if text else left for left, text in rows])


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
