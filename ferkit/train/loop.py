"""One training loop for a laptop CPU, a GPU and a torchrun cluster.

Per epoch: a seeded shuffle, batched tensor augmentation, bf16 autocast where the hardware has
it, validation, early stopping on validation accuracy (keeping the best weights), history and an
atomic checkpoint. All randomness of epoch e is derived from (seed, e), so ``--resume`` after a
kill replays the interrupted epoch exactly and ends with the same weights as a straight run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from contextlib import nullcontext
from copy import deepcopy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn, update_bn
from tqdm import tqdm

from ferkit.data import FerData, load_data, split_data
from ferkit.data.ferplus import VOTES_FILE, default_votes_path, read_votes, with_ferplus_labels
from ferkit.errors import FerkitError
from ferkit.evaluate.metrics import compute_metrics
from ferkit.models import create_model
from ferkit.models.io import load_model, load_model_file, save_model, unwrap
from ferkit.models.preprocess import to_model_input
from ferkit.models.store import atomic_write, remove_stale_temps, resolve, unpinned_shipped, write_json
from ferkit.runtime.torch_backend import predict_logits
from ferkit.train import distributed
from ferkit.train.augment import hflip
from ferkit.train.batches import Faces, Prefetcher, as_tensors, epoch_batches
from ferkit.train.checkpoint import load_checkpoint, save_checkpoint
from ferkit.train.config import TrainConfig
from ferkit.train.distill import distillation_loss, teacher_logits
from ferkit.train.plan import ExecutionPlan, apply, plan_execution

PLATEAU_FACTOR, PLATEAU_PATIENCE = 0.5, 3


@dataclass
class RunState:
    """Everything besides model and optimizer that a resumed run needs."""

    epoch: int = 0  # epochs completed
    best_acc: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    plateau_best: float = -1.0
    plateau_bad: int = 0
    lr_scale: float = 1.0  # reduce-on-plateau multiplier


def learning_rate(cfg: TrainConfig, step: int, steps_per_epoch: int, lr_scale: float) -> float:
    """Linear warmup, then constant (none/plateau) or cosine decay to ``min_lr``."""
    warmup = cfg.warmup_epochs * steps_per_epoch
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    if cfg.schedule == "cosine":
        total = max(1.0, cfg.epochs * steps_per_epoch - warmup)
        progress = min(1.0, (step - warmup) / total)
        return cfg.min_lr + (cfg.lr - cfg.min_lr) * 0.5 * (1 + math.cos(math.pi * progress))
    return cfg.lr * lr_scale


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 100_003 + epoch)


def train_one_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    train: Faces,
    cfg: TrainConfig,
    state: RunState,
    info: distributed.DistInfo,
    plan: ExecutionPlan,
    scaler: torch.amp.GradScaler,
    ema: AveragedModel | None = None,
    teacher: torch.Tensor | None = None,
    compiling: bool = False,
    prior_bias: torch.Tensor | None = None,
) -> dict[str, float]:
    """One epoch, its batches prepared in a thread ahead of the step. ``compiling``: the first
    batch compiles the model (``torch.compile``), which takes minutes; the bar says so, and that
    batch's time stays out of the recorded img/s."""
    model.train()
    gen = epoch_generator(cfg.seed, state.epoch)
    torch.manual_seed(cfg.seed * 100_003 + state.epoch)  # dropout
    steps = len(train) // cfg.batch_size
    per_rank = cfg.batch_size // info.world_size
    rows = slice(info.rank * per_rank, (info.rank + 1) * per_rank)
    # Running sums stay on the device: a .item() per step would stall a GPU at every batch.
    loss_sum = torch.zeros((), dtype=torch.float64, device=info.device)
    correct = torch.zeros((), dtype=torch.int64, device=info.device)
    meter = Throughput(skip_first=compiling and steps > 1)
    amp = plan.amp

    def progress(initial: int) -> tqdm:
        return tqdm(total=steps, initial=initial, desc=f"epoch {state.epoch + 1}/{cfg.epochs}",
                    unit="batch", disable=not info.is_main, file=sys.stderr, leave=False,
                    mininterval=0.5 if sys.stderr.isatty() else 30, dynamic_ncols=True)

    bar = progress(0)
    if compiling and info.is_main:
        bar.write(f"compiling (first batch; {plan.describe()})...", file=sys.stderr)
        bar.set_postfix_str("compiling (first batch)...")
    batches = epoch_batches(train, cfg, gen, rows, info.device, plan.channels_last)
    with Prefetcher(batches) if plan.prefetch else nullcontext(batches) as prepared:
        for step, batch in enumerate(prepared):
            lr = learning_rate(cfg, state.epoch * steps + step, steps, state.lr_scale)
            for group in opt.param_groups:
                group["lr"] = lr
            with torch.autocast(info.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
                logits = model(batch.x).float()
                if prior_bias is not None:  # logit adjustment: the loss sees the natural scores
                    logits = logits + prior_bias
                loss = classification_loss(logits, batch.target, cfg.label_smoothing,
                                           batch.partner, batch.own)
                if teacher is not None:
                    kd = distillation_loss(logits, teacher[batch.idx].to(info.device),
                                           cfg.distill_temperature)
                    loss = (1 - cfg.distill_alpha) * loss + cfg.distill_alpha * kd
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()  # a no-op scaler unless fp16, whose gradients can underflow
            scaler.step(opt)
            scaler.update()
            if ema is not None:
                ema.update_parameters(unwrap(model))
            loss_sum += loss.detach() * len(batch.y)
            correct += (logits.argmax(1) == batch.y).sum()
            meter.add(len(batch.y))
            if step == 0 and compiling:
                if info.is_main:
                    bar.write(f"compiled in {meter.first_seconds:.0f} s", file=sys.stderr)
                bar.close()  # a fresh bar, whose s/batch and ETA leave the compilation out
                bar = progress(1)
            else:
                bar.update(1)
            if info.is_main and (step % 20 == 0 or step == steps - 1):
                seen = meter.images
                shown = {"loss": f"{loss_sum.item() / seen:.3f}", "acc": f"{correct.item() / seen:.3f}"}
                if meter.timed_images:
                    shown["img_s"] = f"{meter.rate() * info.world_size:.0f}"
                shown["path"] = plan.describe()
                bar.set_postfix(shown, lr=f"{lr:.2e}", refresh=False)
    bar.close()
    elapsed = meter.elapsed()
    loss_sum, correct, seen, timed = distributed.all_sum(info, loss_sum.item(), correct.item(),
                                                         meter.images, meter.timed_images)
    return {"train_loss": loss_sum / seen, "train_acc": correct / seen, "train_seconds": elapsed,
            "images_per_s": timed / max(meter.timed_seconds(), 1e-9),
            "cpu_per_wall": meter.cpu_seconds() / max(elapsed, 1e-9), "lr": lr}


clock = time.perf_counter  # what Throughput reads (a test replaces it)
process_cpu = lambda: os.times().user  # noqa: E731  user CPU time, all threads


class Throughput:
    """Images per second over an epoch; with ``skip_first``, the first batch (where
    ``torch.compile`` compiles the model) is left out of the rate."""

    def __init__(self, skip_first: bool = False) -> None:
        self.skip_first = skip_first
        self.start = self.timed_from = clock()
        self.cpu_start = process_cpu()
        self.images = self.timed_images = 0
        self.first_seconds = 0.0

    def add(self, n: int) -> None:
        self.images += n
        if self.images == n:
            self.first_seconds = clock() - self.start
            if self.skip_first:  # the end of the first batch starts the timing
                self.timed_from = self.start + self.first_seconds
                return
        self.timed_images += n

    def elapsed(self) -> float:
        return clock() - self.start

    def cpu_seconds(self) -> float:
        """User CPU time of this process (all its threads) since the start; over the wall-clock
        time, how many cores the epoch kept busy."""
        return process_cpu() - self.cpu_start

    def timed_seconds(self) -> float:
        return clock() - self.timed_from

    def rate(self) -> float:
        return self.timed_images / max(self.timed_seconds(), 1e-9)


def classification_loss(
    logits: torch.Tensor, y: torch.Tensor, smoothing: float,
    partner: torch.Tensor | None = None, own: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cross-entropy with class indices or label distributions (``y`` (B, 7)); after CutMix each
    face's loss is split between its label and its partner's in proportion to the area each one
    covers."""
    if partner is None or own is None:
        return F.cross_entropy(logits, y, label_smoothing=smoothing)
    mine = F.cross_entropy(logits, y, label_smoothing=smoothing, reduction="none")
    theirs = F.cross_entropy(logits, y[partner], label_smoothing=smoothing, reduction="none")
    return (own * mine + (1 - own) * theirs).mean()


@torch.no_grad()
def validate(
    model: nn.Module, val: Faces, cfg: TrainConfig, info: distributed.DistInfo,
    amp: torch.dtype | None, prior_bias: torch.Tensor | None = None,
) -> dict[str, float]:
    """Validation loss and accuracy of the natural decisions (with the training prior, as
    trained), sharded over ranks and summed."""
    model.eval()
    shard = np.arange(info.rank, len(val), info.world_size)
    loss_sum = correct = 0.0
    for start in range(0, len(shard), cfg.eval_batch_size):
        idx = torch.from_numpy(shard[start : start + cfg.eval_batch_size])
        x = to_model_input(val.images[idx]).to(info.device)
        y = val.labels[idx].to(info.device)
        with torch.autocast(info.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(x).float()
        if prior_bias is not None:
            logits = logits + prior_bias
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    loss_sum, correct = distributed.all_sum(info, loss_sum, correct)
    return {"val_loss": loss_sum / len(val), "val_acc": correct / len(val)}


@torch.no_grad()
def recalibrated(
    model: nn.Module, train: Faces, cfg: TrainConfig, info: distributed.DistInfo,
    amp: torch.dtype | None, epoch: int,
) -> nn.Module:
    """A copy of ``model`` whose batch-norm statistics are re-estimated on clean training faces.

    The running statistics (and an EMA's average of them) come from augmented batches: erased,
    rotated, zoomed faces. Test faces are clean, so one pass over clean faces (mirrored at random,
    as flips are label-preserving) gives statistics that match them, the ``update_bn`` step of
    SWA. The copy leaves the model and its EMA untouched, so training goes on as before. Every
    DDP rank recalibrates on the same N faces, so the result does not depend on the world size.
    """
    copy = deepcopy(unwrap(model))
    gen = epoch_generator(cfg.seed + 1, epoch)
    chosen = torch.randperm(len(train), generator=gen)[: cfg.bn_recalibrate]
    flip = torch.rand(len(chosen), 1, 1, 1, generator=gen) < 0.5
    faces = to_model_input(train.images[chosen])
    faces = torch.where(flip, hflip(faces), faces)
    # Near-equal batches: update_bn averages the batches' statistics with equal weights.
    batches = torch.tensor_split(faces, math.ceil(len(faces) / cfg.eval_batch_size))
    with torch.autocast(info.device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
        update_bn(batches, copy, device=info.device)
    distributed.broadcast_buffers(info, copy)  # every rank saw the same faces; make it exact
    return copy.eval()


def patience_exhausted(state: RunState, cfg: TrainConfig) -> bool:
    """Early stopping: ``patience`` epochs without a better validation accuracy (0: never)."""
    return bool(cfg.patience) and state.epoch - state.best_epoch >= cfg.patience


def update_plateau(state: RunState, val_acc: float) -> None:
    if val_acc > state.plateau_best:
        state.plateau_best, state.plateau_bad = val_acc, 0
        return
    state.plateau_bad += 1
    if state.plateau_bad >= PLATEAU_PATIENCE:
        state.lr_scale *= PLATEAU_FACTOR
        state.plateau_bad = 0


def model_card(cfg: TrainConfig, command: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"arch": cfg.arch, "model": cfg.model, "train_config": cfg.to_dict(),
            "command": command, **(extra or {})}


def training_prior(train: Faces) -> torch.Tensor:
    """How common each class is in the training split: the mean vote share (FER+) or the label
    frequency. Floored so that a class missing from a small slice keeps a finite log."""
    if train.targets is not None:
        prior = train.targets.double().mean(0)
    else:
        prior = torch.bincount(train.labels, minlength=7).double() / len(train.labels)
    prior = prior.clamp_min(1e-4)
    return (prior / prior.sum()).float()


def prior_card(prior: torch.Tensor, cfg: TrainConfig) -> dict[str, Any]:
    """The card's ``prior``: the training data's class frequencies (``natural``) and the prior
    implicit in the network's raw logits, ``natural ** (1 - tau)`` renormalised (uniform at tau 1),
    from which inference shifts to the prior a user asks for."""
    implicit = prior.double() ** (1 - cfg.logit_adjust)
    return {"prior": {"natural": [round(float(v), 6) for v in prior],
                      "logits": [round(float(v), 6) for v in implicit / implicit.sum()],
                      "logit_adjust": cfg.logit_adjust}}


def limit(data: FerData, n: int) -> FerData:
    return data.subset(np.arange(min(n, len(data)))) if n else data


def load_splits(cfg: TrainConfig, data_path: str | Path) -> dict[str, FerData]:
    data = load_data(data_path)
    if cfg.labels == "ferplus":
        data = ferplus_labelled(data, data_path, cfg.ferplus_votes)
    splits = split_data(data, cfg.split, cfg.split_seed)
    splits["train"] = limit(splits["train"], cfg.limit_train)
    splits["val"] = limit(splits["val"], cfg.limit_val)
    if not len(splits["val"]) or not len(splits["test"]):
        raise FerkitError(f"{data_path}: the {cfg.split} split leaves no validation or test images")
    if len(splits["train"]) < cfg.batch_size:
        raise FerkitError(f"{len(splits['train'])} training images, fewer than one batch")
    return splits


def ferplus_labelled(data: FerData, data_path: str | Path, votes_path: str) -> FerData:
    """The FER+ protocol's images of ``data``, labelled by the majority, with vote distributions."""
    path = votes_path or default_votes_path(data_path)
    if not path:
        raise FerkitError(f"labels=ferplus: no {VOTES_FILE} beside {data_path}; give ferplus_votes=PATH")
    return with_ferplus_labels(data, read_votes(path))[0]


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """Adam with Adam's defaults (the paper), or AdamW whose weight decay skips norms and biases."""
    if cfg.optimizer == "adam":
        return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def make_ema(model: nn.Module, cfg: TrainConfig) -> AveragedModel | None:
    """An exponential moving average of the weights (and batch-norm statistics), or None."""
    if not cfg.ema_decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)


def check_model_names(cfg: TrainConfig, resuming: bool) -> list[str]:
    """Fail fast on a warm start or teacher that names no weights (a shipped model, a pinned one
    ``name@sha256``, a weights file or a run folder). Returns a warning for each bare shipped
    name: it moves when a new model ships under it, so the recipe would silently start from other
    weights next time; the warning gives the pin that names today's. A warning, not an error:
    ``init_from=default`` on the command line is a fair way to fine-tune what ships now, and the
    recipes in configs/ are held to pins by tests/test_configs.py."""
    if cfg.init_from and not resuming:
        resolve(cfg.init_from).require_weights("init_from")
    for name in cfg.teachers:
        resolve(name).require_weights("a teacher")
    uses = [("init_from", cfg.init_from)] if cfg.init_from and not resuming else []
    uses += [("teachers", name) for name in cfg.teachers]
    return [f"warning: {key} names {name!r}, the shipped model, which changes when a new {name!r} ships; "
            f"this run uses {pin}: write that in the recipe to pin it"
            for key, name in uses if (pin := unpinned_shipped(name))]


def init_weights(model: nn.Module, cfg: TrainConfig) -> None:
    """Warm start from a shipped model or a weights file of the same architecture."""
    if not cfg.init_from:
        return
    source, card = load_model(cfg.init_from)
    misfit = FerkitError(f"init_from={cfg.init_from!r} ({card['arch']} {card.get('model')}) does not "
                         f"fit the configured {cfg.arch} {cfg.model}")
    if card["arch"] != cfg.arch:
        raise misfit
    try:
        model.load_state_dict(source.state_dict())  # strict: every tensor, every shape
    except RuntimeError:
        raise misfit from None


# What a run writes into its folder; the first three mean that the folder holds a run.
RUN_FILES = ("checkpoint.pt", "model.safetensors", "history.json")
WRITTEN = (*RUN_FILES, "model.json", "best.safetensors", "best.json", "history.csv",
           "train_config.json", "metrics_test.json")


def check_run_folder(out: Path, resume: bool) -> None:
    """One-line errors, before any work, for a run folder that cannot serve as asked: ``--resume``
    without a checkpoint to resume, a new run into a folder that holds one (it would be
    overwritten), or a folder where the run's files cannot be written."""
    if out.exists() and not out.is_dir():
        raise FerkitError(f"--out {out}: exists and is not a folder")
    for name in WRITTEN:
        if (out / name).is_dir():
            raise FerkitError(f"{out / name} is a directory, where the run writes a file; move it "
                              "away or choose another --out")
    ckpt = out / "checkpoint.pt"
    if resume and ckpt.is_symlink() and not ckpt.exists():
        raise FerkitError(f"--resume: {ckpt} is a dangling symlink (to {os.readlink(ckpt)}, which does "
                          "not exist); run without --resume to start a new run")
    if resume and not ckpt.is_file():
        raise FerkitError(f"--resume: no checkpoint at {ckpt}; run without --resume to start a new run")
    if not resume and any((out / name).exists() for name in RUN_FILES):
        raise FerkitError(f"{out} already holds a run; pass --resume to continue it, or choose "
                          "another --out")


def fit(
    cfg: TrainConfig, data_path: str | Path, out_dir: str | Path, *, resume: bool = False,
    command: str = "",
) -> dict[str, Any]:
    """Train, keep the best epoch by validation accuracy, and write the run folder:
    ``model.safetensors`` + ``model.json``, ``history.json``/``.csv``, ``checkpoint.pt``,
    ``metrics_test.json``. Returns the test metrics (with ``test_at_end=false``: no test scoring,
    no ``metrics_test.json``, only ``{"summary": ...}``)."""
    out = Path(out_dir)
    info = distributed.setup()
    try:
        if cfg.batch_size % info.world_size:
            raise FerkitError(f"batch_size {cfg.batch_size} is not divisible by {info.world_size} ranks")
        plan = plan_execution(cfg, info.device)
        apply(plan)
        ckpt_path = out / "checkpoint.pt"
        problem = None
        if info.is_main:  # rank 0 judges the run folder; every rank abides by its verdict
            try:
                check_run_folder(out, resume)
            except FerkitError as exc:
                problem = exc
        if distributed.broadcast_flag(info, problem is not None):
            raise problem or FerkitError(f"rank {info.rank}: rank 0 refused the run folder {out}")
        if info.is_main and out.is_dir():  # half-written files of a run killed mid-write
            for stale in remove_stale_temps(out):
                print(f"removed {stale.name}, left by an interrupted write", file=sys.stderr)
        warnings = check_model_names(cfg, resume)  # before minutes of data loading
        torch.manual_seed(cfg.seed)
        model = create_model(cfg.arch, **cfg.model)
        if not resume:  # a resumed run has its weights in the checkpoint
            init_weights(model, cfg)  # before the data: a misfit is a one-line error, at once
        for warning in warnings if info.is_main else []:  # after any error: that stays one line
            print(warning, file=sys.stderr)
        loading = time.perf_counter()
        splits = {name: as_tensors(part) for name, part in load_splits(cfg, data_path).items()}
        if info.is_main:
            print(f"data loaded in {time.perf_counter() - loading:.1f} s", file=sys.stderr)
        model = model.to(info.device)
        if plan.channels_last:
            model = model.to(memory_format=torch.channels_last)
        opt = make_optimizer(model, cfg)
        ema = make_ema(model, cfg)
        amp = plan.amp
        scaler = torch.amp.GradScaler(info.device.type, enabled=amp is torch.float16)
        state = RunState()
        if resume:
            state = restore(load_checkpoint(ckpt_path), model, opt, ema, scaler)
            if info.is_main:
                print(f"resuming after epoch {state.epoch} (best val acc {state.best_acc:.4f})",
                      file=sys.stderr)
        if info.is_main:
            print(f"training path: {plan.describe()}", file=sys.stderr)
            out.mkdir(parents=True, exist_ok=True)
            write_json(out / "train_config.json", {"config": cfg.to_dict(), "data": str(data_path),
                                                    "command": command})
        net = model
        if info.enabled:
            net = nn.parallel.DistributedDataParallel(model)
        if plan.compile:
            net = torch.compile(net)
        teacher = run_teacher_logits(cfg, splits["train"], out, info)
        prior = training_prior(splits["train"])
        bias = (cfg.logit_adjust * prior.log()).to(info.device) if cfg.logit_adjust else None
        stop = state.best_epoch >= 0 and patience_exhausted(state, cfg)
        first_epoch = state.epoch  # this process's first epoch compiles the model
        while state.epoch < cfg.epochs and not stop:
            row = {"epoch": state.epoch + 1}
            row |= train_one_epoch(net, opt, splits["train"], cfg, state, info, plan, scaler, ema,
                                   teacher, compiling=plan.compile and state.epoch == first_epoch,
                                   prior_bias=bias)
            if ema is not None:  # the averaged weights are the ones validated, kept and shipped
                distributed.broadcast_buffers(info, ema.module)
            kept: nn.Module = model if ema is None else ema.module
            if cfg.bn_recalibrate:
                kept = recalibrated(kept, splits["train"], cfg, info, amp, state.epoch)
            row |= validate(net if kept is model else kept, splits["val"], cfg, info, amp, bias)
            state.epoch += 1
            state.history.append(row)
            if cfg.schedule == "plateau":
                update_plateau(state, row["val_acc"])
            improved = row["val_acc"] > state.best_acc
            if improved:
                state.best_acc, state.best_epoch = row["val_acc"], state.epoch
            stop = patience_exhausted(state, cfg)
            if info.is_main:
                if improved:
                    save_model(kept, out / "best", model_card(cfg, command, prior_card(prior, cfg)))
                write_history(out, state.history)
                save_checkpoint(ckpt_path, checkpoint_of(model, opt, ema, scaler, state))
                print(format_epoch(row, cfg.epochs, improved), file=sys.stderr, flush=True)
            stop = distributed.broadcast_flag(info, stop)
        checksums = rank_checksums(model, info)
        metrics = finish(cfg, splits, out, state, info, command, checksums, plan.describe())
        # Ranks leave together, as destroy_process_group expects: a rank that tore gloo's group down
        # and exited while rank 0 still scored the test split aborted ("terminate called without
        # an active exception") in 6 of 60 two-rank test runs.
        distributed.barrier(info)
        return metrics
    finally:
        distributed.teardown(info)


def checkpoint_of(
    model: nn.Module, opt: torch.optim.Optimizer, ema: AveragedModel | None,
    scaler: torch.amp.GradScaler, state: RunState,
) -> dict[str, Any]:
    """Everything a resumed run needs to continue exactly where this one stands."""
    ckpt = {"model": model.state_dict(), "optimizer": opt.state_dict(), "state": state.__dict__}
    if ema is not None:
        ckpt["ema"] = ema.state_dict()
    if scaler.is_enabled():  # fp16: the loss scale it has learned
        ckpt["scaler"] = scaler.state_dict()
    return ckpt


def restore(
    ckpt: dict[str, Any], model: nn.Module, opt: torch.optim.Optimizer, ema: AveragedModel | None,
    scaler: torch.amp.GradScaler,
) -> RunState:
    """Load a :func:`checkpoint_of` dict into the run's objects; returns its RunState."""
    if ema is not None and "ema" not in ckpt:
        raise FerkitError("cannot resume: the checkpoint was trained without ema_decay")
    try:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        if ema is not None:
            ema.load_state_dict(ckpt["ema"])
        if scaler.is_enabled() and "scaler" in ckpt:
            scaler.load_state_dict(ckpt["scaler"])
        return RunState(**ckpt["state"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        raise FerkitError("cannot resume: the checkpoint does not match this config (model, "
                          f"optimizer or ema_decay changed?): {str(exc).splitlines()[0]}") from None


def run_teacher_logits(
    cfg: TrainConfig, train: Faces, out: Path, info: distributed.DistInfo,
) -> torch.Tensor | None:
    """The teachers' cached logits for the training split (rank 0 computes, the others read)."""
    if not cfg.teachers:
        return None
    if not info.is_main:
        distributed.barrier(info)
    logits = teacher_logits(cfg.teachers, train.images, out, write=info.is_main)
    if info.is_main:
        distributed.barrier(info)
    return logits


def rank_checksums(model: nn.Module, info: distributed.DistInfo) -> list[list[float]]:
    """(sum, sum of squares) of every rank's final weights: DDP ranks must agree exactly."""
    params = torch.cat([p.detach().double().flatten() for p in model.parameters()])
    mine = torch.stack([params.sum(), params.square().sum()]).to(info.device)
    if not info.enabled:
        return [mine.tolist()]
    gathered = [torch.zeros_like(mine) for _ in range(info.world_size)]
    torch.distributed.all_gather(gathered, mine)
    return [g.tolist() for g in gathered]


def finish(
    cfg: TrainConfig, splits: dict[str, Faces], out: Path, state: RunState,
    info: distributed.DistInfo, command: str, checksums: list[list[float]], path: str = "",
) -> dict[str, Any]:
    """Restore the best epoch's weights, write them as the run's model and, unless
    ``test_at_end`` is off, evaluate them on the test split."""
    if not info.is_main:
        return {}
    best, best_card = load_model_file(out / "best")
    prior = best_card.get("prior") or {}
    train_minutes = sum(r["train_seconds"] for r in state.history) / 60
    summary = {
        "best_epoch": state.best_epoch, "epochs_run": state.epoch, "val_accuracy": state.best_acc,
        "train_minutes": train_minutes,
        "images_per_s": float(np.mean([r["images_per_s"] for r in state.history])),
        "training_path": path,
        "params": sum(p.numel() for p in best.parameters()), "split": cfg.split,
        "world_size": info.world_size, "rank_param_checksums": checksums,
    }
    if any(c != checksums[0] for c in checksums):
        print("warning: DDP ranks ended with different weights", file=sys.stderr)
    metrics: dict[str, Any] = {}
    if cfg.test_at_end:  # off while choosing models: the test split stays unseen
        logits = predict_logits(best, splits["test"].images, cfg.eval_batch_size)
        if prior:  # the natural decisions, as validated: the raw logits shifted to the training prior
            logits = logits + torch.tensor(prior["natural"]).log() - torch.tensor(prior["logits"]).log()
        metrics = compute_metrics(splits["test"].labels.numpy(), logits.argmax(1).numpy())
        summary |= {"test_accuracy": metrics["accuracy"], "test_macro_f1": metrics["macro_f1"]}
        write_json(out / "metrics_test.json", metrics | {"summary": summary})
    save_model(best, out / "model", model_card(cfg, command, {"prior": prior, "metrics": summary}))
    scored = (f"test acc {metrics['accuracy']:.4f}, macro-F1 {metrics['macro_f1']:.4f}" if metrics
              else "test not scored: test_at_end=false")
    print(f"best epoch {state.best_epoch}: val acc {state.best_acc:.4f}, {scored}", file=sys.stderr)
    return metrics | {"summary": summary}


def format_epoch(row: dict[str, Any], epochs: int, improved: bool) -> str:
    return (f"epoch {row['epoch']:3d}/{epochs}  loss {row['train_loss']:.4f}  acc {row['train_acc']:.4f}  "
            f"val_loss {row['val_loss']:.4f}  val_acc {row['val_acc']:.4f}  lr {row['lr']:.2e}  "
            f"{row['images_per_s']:.0f} img/s  {row.get('cpu_per_wall', 0):.1f} cores busy  "
            f"{row['train_seconds']:.0f}s" + ("  *" if improved else ""))


def write_history(out: Path, history: list[dict[str, Any]]) -> None:
    write_json(out / "history.json", history)
    keys = list(history[0])
    lines = [",".join(keys)] + [",".join(f"{r[k]:.6g}" for k in keys) for r in history]
    atomic_write(out / "history.csv", lambda tmp: Path(tmp).write_text("\n".join(lines) + "\n"))
