"""`vitkit study data-scaling`: nested class-balanced subsets, counted training FLOPs, both figures,
the JSON line, and resuming without redoing finished runs."""

import csv
import json

import pytest
import torch
from click.testing import CliRunner

import vitkit.train
from vitkit.cli import main
from vitkit.cli.study import expand_list_options
from vitkit.data.splits import nested_subset
from vitkit.flops import count_forward_flops
from vitkit.study import StudyError, parse_model_spec, run_name
from vitkit.variants import model_config

VIT = "vit_ti4:embed_dim=32,depth=2,num_heads=2"
BIT = "bit_r26x1:layers=[1,1],stem_width=16,stage_widths=[32,64],num_groups=4"
COMMON = ["--data", "digits", "--img-size", "8", "--steps", "3", "--batch-size", "32", "--device", "cpu",
          "--hflip", "false"]


def test_subsets_are_nested_class_balanced_and_fixed_by_the_seed():
    labels = torch.arange(300) % 3
    labels[:60] = 0  # unbalanced: class 0 has 140 examples, classes 1 and 2 have 80
    state = torch.get_rng_state()
    small, large = nested_subset(labels, 0.1, seed=5), nested_subset(labels, 0.5, seed=5)
    assert torch.equal(torch.get_rng_state(), state)  # the global RNG is untouched
    assert set(small.tolist()) < set(large.tolist())
    assert torch.bincount(labels[small]).tolist() == [14, 8, 8]  # every class keeps its share
    assert torch.bincount(labels[large]).tolist() == [70, 40, 40]
    assert torch.equal(nested_subset(labels, 0.5, seed=5), large)
    assert not torch.equal(nested_subset(labels, 0.5, seed=6), large)
    assert nested_subset(labels, 1.0, seed=5).tolist() == list(range(300))
    assert torch.bincount(labels[nested_subset(labels, 0.001, seed=5)]).tolist() == [1, 1, 1]


def test_list_options_and_model_specs():
    args = ["--models", "a", "b:x=[1,2],y=3", "--json", "--fractions", "0.1", "1", "--mixup", "0.2"]
    assert expand_list_options(args) == ["--models", "a", "--models", "b:x=[1,2],y=3", "--json", "--fractions",
                                         "0.1", "--fractions", "1", "--mixup", "0.2"]
    assert parse_model_spec(BIT) == ("bit_r26x1", dict(layers=[1, 1], stem_width=16, stage_widths=[32, 64],
                                                       num_groups=4))
    assert run_name(VIT, 0.25) == "vit_ti4-embed_dim32-depth2-num_heads2_0.25"
    with pytest.raises(StudyError, match="FIELD=VALUE"):
        parse_model_spec("vit_ti4:depth")


def study(tmp_path, *extra):
    args = ["study", "data-scaling", *COMMON, "--models", VIT, BIT, "--fractions", "0.25", "1.0",
            "--out", str(tmp_path / "study"), "--json", *extra]
    return CliRunner().invoke(main, args)


def test_study_on_digits_writes_figures_json_and_resumes(tmp_path, monkeypatch):
    result = study(tmp_path)
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])["results"]
    assert [(r["model"], r["fraction"]) for r in rows] == [(VIT, 0.25), (VIT, 1.0), (BIT, 0.25), (BIT, 1.0)]
    for r in rows:
        assert {"model", "fraction", "n_train", "test_top1", "train_flops"} <= set(r) and 0 <= r["test_top1"] <= 1
    # the same nested subsets for both models: 25% of each digit class of the 1,438-image training split
    assert [r["n_train"] for r in rows] == [359, 1438, 359, 1438]
    # training FLOPs = 3 x counted forward FLOPs per image x images seen (3 steps of 32)
    forward = count_forward_flops(model_config("vit_ti4", img_size=8, in_chans=1, num_classes=10,
                                               embed_dim=32, depth=2, num_heads=2))
    assert rows[0]["train_flops"] == 3 * forward * 3 * 32 and rows[0]["family"] == "vit"
    assert rows[2]["train_flops"] > 0 and rows[2]["family"] == "bit"
    out = tmp_path / "study"
    for name in ("data_scaling.png", "compute_scaling.png"):
        png = (out / name).read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    with open(out / "results.csv") as f:
        assert [int(r["n_train"]) for r in csv.DictReader(f)] == [359, 1438, 359, 1438]
    assert json.loads((out / "results.json").read_text())["results"] == rows
    assert (out / "runs" / run_name(BIT, 1.0) / "model" / "config.json").is_file()

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(vitkit.train, "train", no_training)
    again = study(tmp_path)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout.strip().splitlines()[-1])["results"] == rows


def test_resuming_trains_only_the_new_runs_and_refuses_other_settings(tmp_path, monkeypatch):
    first = CliRunner().invoke(main, ["study", "data-scaling", *COMMON, "--models", VIT, "--fractions", "0.5",
                                      "--out", str(tmp_path / "study")])
    assert first.exit_code == 0, first.output
    trained = []
    real_train = vitkit.train.train

    def counting_train(config, *args, **kwargs):
        trained.append((config.model, config.train_fraction))
        return real_train(config, *args, **kwargs)

    monkeypatch.setattr(vitkit.train, "train", counting_train)
    more = CliRunner().invoke(main, ["study", "data-scaling", *COMMON, "--models", VIT, "--fractions", "0.5", "1",
                                     "--out", str(tmp_path / "study"), "--json"])
    assert more.exit_code == 0, more.output
    assert trained == [("vit_ti4", 1.0)]
    assert [r["fraction"] for r in json.loads(more.stdout.strip().splitlines()[-1])["results"]] == [0.5, 1.0]
    other = CliRunner().invoke(main, ["study", "data-scaling", *COMMON, "--lr", "0.5", "--models", VIT,
                                      "--fractions", "0.5", "--out", str(tmp_path / "study")])
    assert other.exit_code != 0 and "other settings (lr)" in other.output
    tiny = CliRunner().invoke(main, ["study", "data-scaling", *COMMON, "--models", VIT, "--fractions", "0.01",
                                     "--out", str(tmp_path / "tiny")])
    assert tiny.exit_code != 0 and "fewer than the batch size" in tiny.output


def test_a_run_interrupted_mid_training_continues_from_its_checkpoint(tmp_path, monkeypatch):
    from vitkit.study import data_scaling
    from vitkit.train import TrainConfig, Trainer

    base = TrainConfig().with_overrides(dict(img_size=8, steps=3, batch_size=32, device="cpu", progress=False,
                                             checkpoint_every=1, hflip=False))
    calls = {"n": 0}
    real_step = Trainer.train_step

    def dying_step(self, batches):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # killed during step 2: step 1's checkpoint is on disk
        return real_step(self, batches)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    with pytest.raises(KeyboardInterrupt):
        data_scaling("digits", [VIT], [0.5], tmp_path / "study", base=base)
    monkeypatch.setattr(Trainer, "train_step", real_step)
    resumed = []
    real_train = vitkit.train.train
    monkeypatch.setattr(vitkit.train, "train", lambda config, resume=None, **kw: (
        resumed.append(resume), real_train(config, resume=resume, **kw))[1])
    summary = data_scaling("digits", [VIT], [0.5], tmp_path / "study", base=base)
    assert resumed == [tmp_path / "study" / "runs" / run_name(VIT, 0.5)]  # continued, not restarted
    assert [r["steps"] for r in summary["results"]] == [3]
