"""Core counting for thread defaults: affinity and container CPU quotas."""

from __future__ import annotations

import os

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
