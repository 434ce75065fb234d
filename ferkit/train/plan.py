"""How a training run uses the hardware: threads, memory layout, precision, compilation.

Every choice is made once per run, from what the device has, and printed in the progress bar, so
that a figure always comes with the path that produced it. The measurements behind the CPU
choices are in benchmarks/results/train_speed.md (``python benchmarks/train_speed.py``):

- threads: every core the process may use (its affinity mask and cgroup quota). With one thread,
  one of two cores idles.
- channels-last memory: oneDNN's depthwise and pointwise convolutions run 1.4-1.6x faster in
  NHWC than NCHW on an AVX2 CPU.
- bf16 autocast only where the CPU computes it natively (AMX, AVX-512 BF16); on AVX2 it is
  emulated and slower than fp32.
- torch.compile: on an AVX2 CPU the compiled step measured slower than eager channels-last (and
  costs a minute or more of compiling), so ``compile=auto`` compiles on CUDA only.
  ``compile=true`` compiles anywhere, with inductor's caches kept in a folder that outlives the run
  so that a second run with the same shapes reuses the compiled graphs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from ferkit.cpu import available_cores
from ferkit.train.config import TrainConfig


@dataclass(frozen=True)
class ExecutionPlan:
    device: torch.device
    threads: int  # intra-op threads of the training step (CPU)
    channels_last: bool
    compile: bool
    amp: torch.dtype | None  # autocast dtype; None: fp32
    prefetch: bool = True  # prepare batches in a thread ahead of the step (off: benchmarks only)

    def describe(self) -> str:
        """A few words for the progress bar and the log: ``eager fp32 NHWC 2 threads``."""
        parts = ["compiled" if self.compile else "eager",
                 {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp],
                 "NHWC" if self.channels_last else "NCHW"]
        if self.device.type == "cpu":
            parts.append(f"{self.threads} thread{'s' * (self.threads != 1)}")
        else:
            parts.append(self.device.type)
        return " ".join(parts)


def native_bf16() -> bool:
    """True where oneDNN computes bf16 in hardware (AMX or AVX-512 BF16), not by emulation."""
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


def autocast_dtype(cfg: TrainConfig, device: torch.device) -> torch.dtype | None:
    """bf16 on CPUs with native support and on GPUs that have it; fp32 elsewhere."""
    if cfg.amp == "off":
        return None
    if cfg.amp == "fp16":
        return torch.float16 if device.type == "cuda" else None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if cfg.amp == "bf16" or native_bf16():
        return torch.bfloat16
    return None


def plan_execution(cfg: TrainConfig, device: torch.device) -> ExecutionPlan:
    threads = cfg.threads or available_cores()
    channels_last = {"auto": device.type == "cpu", "true": True, "false": False}[cfg.channels_last]
    compiling = {"auto": device.type == "cuda", "true": True, "false": False}[cfg.compile]
    return ExecutionPlan(device, threads, channels_last, compiling, autocast_dtype(cfg, device))


def inductor_cache_dir() -> Path:
    """Where compiled graphs are kept between runs: ``$TORCHINDUCTOR_CACHE_DIR`` if set, else
    ``~/.cache/ferkit/inductor`` (inductor's own default lives in /tmp, which a reboot clears)."""
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR"):
        return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "ferkit" / "inductor"


def apply(plan: ExecutionPlan) -> None:
    """Set the process-wide parts of the plan (threads, compile caches) before the model is built."""
    if plan.device.type == "cpu":
        torch.set_num_threads(plan.threads)
    if plan.compile:
        folder = inductor_cache_dir()
        folder.mkdir(parents=True, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)  # read when inductor first compiles
        import torch._functorch.config as functorch_config
        import torch._inductor.config as inductor_config

        inductor_config.fx_graph_cache = True  # compiled kernels, keyed by graph and shapes
        functorch_config.enable_autograd_cache = True  # the forward/backward split as well
