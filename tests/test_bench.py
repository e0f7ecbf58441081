"""`vitkit bench` on the CPU: the JSON report's fields, FLOPs counted from the function (the same for
vitkit and Hugging Face's model), clear errors, and the host-bound flag of GPU results."""

from __future__ import annotations

import json
import time

import pytest
import torch
from click.testing import CliRunner

from vitkit.bench import host_bound, host_step_ms, time_steps
from vitkit.cli import main
from vitkit.flops import count_forward_flops
from vitkit.variants import model_config

SMALL = ["--device", "cpu", "--model", "vit_ti16", "--img-size", "32", "--batch", "2", "--depth", "1",
         "--num-classes", "10", "--warmup", "1", "--iters", "1", "--repeats", "1"]


def test_bench_on_cpu_reports_every_field_for_vitkit_and_its_peers():
    result = CliRunner().invoke(main, ["bench", *SMALL, "--mode", "train", "--mode", "infer", "--compare", "hf,timm",
                                       "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.strip().splitlines()[-1])
    rows = {(r["impl"], r["mode"]): r for r in report["results"]}
    expected_impls = {"vitkit", "hf"} | ({"timm"} if "timm" not in report["skipped"] else set())
    assert set(rows) == {(impl, mode) for impl in expected_impls for mode in ("train", "infer")}
    assert not report["failed"]
    flops = count_forward_flops(model_config("vit_ti16", img_size=32, depth=1, num_classes=10)) / 1e9
    for row in rows.values():
        assert row["img_s"] > 0 and row["step_ms"] > 0 and row["batch"] == 2 and row["compiled"] is False
        # no GPU: no peak memory, no ceiling to take a fraction of, no host/GPU split
        assert row["peak_mem_gib"] is None and row["tflops"] is None and row["mfu"] is None and row["host_ms"] is None
        assert row["gflops_per_image"] == pytest.approx(flops)  # counted on the function, whatever implements it
    assert report["ceiling_tflops"] is None and report["env"]["device"] == "cpu"


def test_bench_prints_a_table_for_people():
    result = CliRunner().invoke(main, ["bench", *SMALL], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "vit_ti16 at 32, batch 2, cpu" in result.output
    assert all(column in result.output for column in ("vitkit", "img/s", "step ms", "host ms", "MFU"))


def test_bench_rejects_an_unknown_speed_option_before_measuring():
    result = CliRunner().invoke(main, ["bench", *SMALL, "--speed", "bf16_residual,turbo"])
    assert result.exit_code != 0
    assert "turbo" in result.output and "measuring" not in result.output


def test_host_bound_flags_a_step_whose_launch_took_as_long_as_its_run():
    assert host_bound({"host_ms": 9.5, "step_ms": 10.0})
    assert not host_bound({"host_ms": 2.8, "step_ms": 7.9})  # CUDA graphs on the CIFAR-scale model
    assert not host_bound({"host_ms": None, "step_ms": 10.0})  # CPU
    assert host_step_ms(lambda: None, torch.device("cpu")) is None


def test_settle_keeps_stepping_for_its_seconds_before_timing():
    calls = []
    time_steps(lambda: calls.append(time.perf_counter()) or time.sleep(0.002), torch.device("cpu"), warmup=1,
               iters=2, repeats=1, settle_s=0.1)
    # the two timed calls start at least 0.1 s after the warm-up call, with settling calls in between
    assert calls[-2] - calls[0] >= 0.1 and len(calls) > 3
    calls.clear()
    time_steps(lambda: calls.append(0), torch.device("cpu"), warmup=1, iters=2, repeats=1)
    assert len(calls) == 3  # no settling by default


def test_bench_refuses_a_negative_settle():
    result = CliRunner().invoke(main, ["bench", *SMALL, "--settle", "-1"])
    assert result.exit_code != 0 and "--settle" in result.output
