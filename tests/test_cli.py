"""The command line itself: help, mistakes, pipes and per-command settings, as a user meets them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys

import pytest
from conftest import REPO, run_ferkit

import ferkit.cli
import ferkit.serve.server
from ferkit.cli import main


def subparser(parser: argparse.ArgumentParser, *names: str) -> argparse.ArgumentParser:
    for name in names:
        parser = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]
    return parser


def test_help_shows_defaults_and_every_option_has_a_text():
    proc = run_ferkit("eval", "--help")
    assert proc.returncode == 0
    assert "(default: canonical)" in proc.stdout and "(default: 0)" in proc.stdout
    assert "(default: 8000)" in run_ferkit("serve", "--help").stdout
    for command, option in [("eval", "--split"), ("eval", "--protocol"), ("eval", "--split-seed"),
                            ("export", "--format"), ("data summary", "--data"), ("report", "run_dir")]:
        parser = subparser(ferkit.cli.build_parser(), *command.split())
        action = next(a for a in parser._actions if option in a.option_strings or a.dest == option)
        assert action.help, (command, option)


@pytest.mark.parametrize(("group", "subcommands"), [("data", "summary"), ("model", "summary, list, pin")])
def test_a_group_without_its_subcommand_names_the_subcommands(group, subcommands):
    proc = run_ferkit(group)
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"ferkit: error: ferkit {group} needs a subcommand: {subcommands} "
                                   f"(see ferkit {group} --help)")
    assert "_command" not in proc.stderr


def test_serve_refuses_a_port_out_of_range_in_one_line():
    proc = run_ferkit("serve", "--port", "99999", timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == ["ferkit: error: --port 99999 is not a TCP port: "
                                                "give 1-65535 (0: any free port)"]


def test_predict_into_a_closed_pipe_stops_quietly(astronaut_png):
    """`ferkit predict --csv | head -1`: the reader is gone before ferkit writes its rows."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # as `head` does once it has its line
    try:
        proc = subprocess.run([sys.executable, "-m", "ferkit", "predict", "--csv", str(astronaut_png)],
                              cwd=REPO, stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert proc.returncode == 1
    assert proc.stderr == "", proc.stderr  # no BrokenPipeError traceback, no "Exception ignored"


def test_serve_keeps_the_default_allocator_and_batch_commands_do_not(monkeypatch, capsys):
    """keep_freed_memory (mallopt) holds every spike's memory: right for batch runs, not a server."""
    calls: list[str] = []
    monkeypatch.setattr(ferkit.cli, "keep_freed_memory", lambda: calls.append("mallopt") or True)
    monkeypatch.setattr(ferkit.serve.server, "run_server", lambda **kwargs: calls.append("serve"))
    assert main(["serve"]) == 0
    assert calls == ["serve"]
    calls.clear()
    assert main(["model", "list"]) == 0
    assert calls == ["mallopt"]


def test_output_paths_follow_one_rule(astronaut_png, tmp_path):
    """ferkit creates or replaces the output itself, never the folder that holds it."""
    a_file = tmp_path / "taken.png"
    a_file.write_bytes(b"")
    for args, message in [
        (["predict", astronaut_png, "--annotate", a_file], "exists and is not a folder"),
        (["predict", astronaut_png, "--annotate", tmp_path / "no" / "out"], "does not exist"),
        (["export", "--model", "paper", "--out", tmp_path / "no" / "paper.onnx"], "does not exist"),
        (["export", "--model", "paper", "--out", tmp_path], "is a folder"),
    ]:
        proc = run_ferkit(*args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and proc.stdout == "", proc.stderr
    assert not (tmp_path / "no").exists()
    # The output folder itself is made, as is the output file.
    proc = run_ferkit("predict", astronaut_png, "--annotate", tmp_path / "annotated")
    assert proc.returncode == 0 and (tmp_path / "annotated" / "astronaut.annotated.png").is_file()
    proc = run_ferkit("export", "--model", "paper", "--out", tmp_path / "paper.onnx")
    assert proc.returncode == 0 and (tmp_path / "paper.onnx").is_file(), proc.stderr


@pytest.mark.parametrize(("argv", "meant"), [(["predcit", "x.png"], "predict"), (["model", "lst"], "list")])
def test_a_mistyped_subcommand_names_the_one_it_most_likely_means(argv, meant):
    result = run_ferkit(*argv)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].endswith(f"did you mean {meant!r}?"), result.stderr


def test_model_list_shows_what_each_model_is_for_and_its_cards_figures():
    """`default`'s FER+ and ExpW-dev figures are its card's, under the prior --prior auto gives."""
    import json

    proc = run_ferkit("model", "list")
    assert proc.returncode == 0, proc.stderr
    card = json.loads((REPO / "ferkit" / "weights" / "default.json").read_text())
    s, speed = card["figures"]["by_prior"]["balanced"], card["figures"]["speed"]
    row = next(line for line in proc.stdout.splitlines() if line.startswith("default "))
    for cell in (f"{s['ferplus_test_accuracy']:.2%} / {s['ferplus_test_macro_f1']:.3f}",
                 f"{s['expw_dev_end_to_end_accuracy']:.2%} / {s['expw_dev_end_to_end_macro_f1']:.3f}",
                 f"{s['fer2013_test_accuracy']:.2%}", f"{card['metrics']['params']:,d}",
                 f"{speed['crops_per_s']:,.0f}"):
        assert cell in row, (cell, row)
    assert card["purpose"] in proc.stdout and speed["on"] in proc.stdout
    assert "under the balanced prior" in proc.stdout
