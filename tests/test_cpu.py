"""Core counting for thread defaults: affinity and container CPU quotas."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ferkit.cpu import available_cores, cgroup_cpu_quota


@pytest.mark.parametrize(("text", "cores"), [("200000 100000\n", 2), ("150000 100000", 2),
                                             ("max 100000", None), ("garbage", None)])
def test_cgroup_quota_is_read_in_whole_cores(tmp_path, text, cores):
    path = tmp_path / "cpu.max"
    path.write_text(text)
    assert cgroup_cpu_quota(path) == cores


def test_missing_cgroup_file_means_no_quota(tmp_path):
    assert cgroup_cpu_quota(tmp_path / "nope") is None


def test_available_cores_never_exceeds_the_affinity_mask():
    assert 1 <= available_cores() <= len(os.sched_getaffinity(0))


FORWARD_TWICE = """
import resource, sys, torch
from ferkit.cpu import keep_freed_memory
from ferkit.models import create_model
if sys.argv[1] == "keep":
    assert keep_freed_memory()
torch.set_num_threads(1)
net, x = create_model("paper_net", stem=[32, 64], widths=[128, 256, 512]).eval(), torch.zeros(256, 1, 48, 48)
with torch.inference_mode():
    net(x)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    net(x)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_a_second_batch_reuses_the_first_ones_memory():
    """Batch after batch, activations of 75 MB: glibc alone faults every page in again each time."""

    def page_faults(mode: str) -> int:
        run = subprocess.run([sys.executable, "-c", FORWARD_TWICE, mode], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr
        return int(run.stdout)

    default = page_faults("default")
    assert default > 50_000  # hundreds of MB faulted in and zeroed by the kernel per batch
    assert page_faults("keep") < default / 4  # measured: 0 to 60k against 507k
