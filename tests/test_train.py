"""The training engine: the default job, exact resume, crash safety, divergence, distributed, configs."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

import vitkit
from vitkit.cli import main
from vitkit.train import TrainConfig, Trainer, TrainingDiverged, preset_values, train

# A fast digits run: 4x4 patches of 8x8 images, tiny width, a few dozen steps.
FAST = dict(model="vit_ti4", data="digits", img_size=8, model_overrides=dict(embed_dim=32, depth=2, num_heads=2),
            batch_size=32, lr=2e-3, progress=False, log_every=5)


def fast_config(tmp_path: Path, name: str = "run", **kw) -> TrainConfig:
    fields = {**FAST, "out": str(tmp_path / name), **kw}
    return TrainConfig().with_overrides(fields)


def final_weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "model" / "model.safetensors"))


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_run_directory_holds_everything(tmp_path):
    summary = train(fast_config(tmp_path, steps=20, checkpoint_every=10, augment={"mixup": 0.2, "erase": 0.2}))
    run = Path(summary["run_dir"])
    for name in ("config.yaml", "metrics.jsonl", "curves.png", "summary.json", "latest.json", "model/config.json"):
        assert (run / name).is_file(), name
    assert summary["steps"] == 20 and 0 <= summary["val_top1"] <= 1 and summary["seconds"] > 0
    kinds = [json.loads(ln)["kind"] for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("train") == 4 and "val" in kinds
    assert TrainConfig.load(run / "config.yaml") == fast_config(tmp_path, steps=20, checkpoint_every=10,
                                                                 augment={"mixup": 0.2, "erase": 0.2})
    model = vitkit.load_model(run)  # a run directory loads its final weights
    assert model.config.num_classes == 10 and model.config.embed_dim == 32


class Interrupt(Exception):
    pass


def train_until_interrupted(monkeypatch, config: TrainConfig, step: int) -> None:
    """Run `config` and die in its `step`-th optimiser step, as a crash would."""
    original, calls = Trainer.train_step, {"n": 0}

    def dying_step(self, batches):
        calls["n"] += 1
        if calls["n"] == step:
            raise Interrupt
        return original(self, batches)

    with monkeypatch.context() as patch:
        patch.setattr(Trainer, "train_step", dying_step)
        with pytest.raises(Interrupt):
            train(config)


def test_interrupted_and_resumed_run_is_bit_identical(tmp_path, monkeypatch):
    kw = dict(steps=30, checkpoint_every=10, ema_decay=0.9, model_overrides=dict(embed_dim=32, depth=2, num_heads=2,
              drop_path=0.1, dropout=0.1), augment={"crop": "rrc", "mixup": 0.5, "cutmix": 0.5, "erase": 0.25})
    train(fast_config(tmp_path, "straight", **kw))

    train_until_interrupted(monkeypatch, fast_config(tmp_path, "interrupted", **kw), step=25)  # last ckpt: 20
    assert json.loads((tmp_path / "interrupted" / "latest.json").read_text())["step"] == 20
    train(TrainConfig(), resume=tmp_path / "interrupted")

    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "interrupted")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    def curve(run):  # everything but the timings
        rows = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [(r["kind"], r["step"], r["loss"], r["top1"]) for r in rows]

    assert curve("straight") == curve("interrupted")


def test_time_budget_refits_the_schedule_and_survives_a_resume(tmp_path, monkeypatch):
    budget = 4.0
    summary = train(fast_config(tmp_path, "budget", steps=10**6, time_budget=budget, checkpoint_every=0))
    assert 130 < summary["steps"] < 10**6
    assert summary["seconds"] < 2 * budget, summary  # fitted with a margin; generous for a busy CI machine
    rows = [json.loads(ln) for ln in (tmp_path / "budget" / "metrics.jsonl").read_text().splitlines()]
    lrs = [r["lr"] for r in rows if r["kind"] == "train"]
    assert lrs[-1] < 0.05 * max(lrs), "the decay must end with the fitted run"

    config = fast_config(tmp_path, "resumed", steps=10**6, time_budget=budget, checkpoint_every=150)
    train_until_interrupted(monkeypatch, config, step=160)  # fitted at step 130, checkpoint at 150
    state = torch.load(tmp_path / "resumed" / "checkpoints" / "state_00000150.pt", weights_only=False)
    assert state["schedule_fitted"] and state["total_steps"] < 10**6
    resumed = train(TrainConfig(), resume=tmp_path / "resumed")
    assert resumed["steps"] == state["total_steps"], "a resumed run keeps its fitted length"
    with pytest.raises(ValueError, match="time_budget"):
        TrainConfig(time_budget=0)


def test_kill_9_leaves_a_loadable_checkpoint_and_resume_finishes(tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "vitkit", "train", "--data", "digits", "--model", "vit_ti4", "--img-size", "8",
           "--steps", "100000", "--batch-size", "16", "--checkpoint-every", "3", "--out", str(out),
           "--embed-dim", "32", "--depth", "1", "--num-heads", "2", "--progress", "false"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            pointer = out / "latest.json"
            if pointer.exists() and json.loads(pointer.read_text())["step"] >= 9:
                break
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    model = vitkit.load_model(out)  # whatever moment it died, the pointer names complete files
    assert model.config.depth == 1
    cfg = TrainConfig.load(out / "config.yaml")
    step = json.loads((out / "latest.json").read_text())["step"]
    cfg.steps = step + 3  # shorten the run so the resume finishes quickly
    cfg.save(out / "config.yaml")
    summary = train(TrainConfig(), resume=out)
    assert summary["steps"] == step + 3


def test_non_finite_loss_stops_with_a_clear_message_and_keeps_the_good_checkpoint(tmp_path, monkeypatch):
    original = Trainer.train_step

    def poisoned(self, batches):
        loss, correct = original(self, batches)
        if self.scheduler.last_epoch > 12:
            loss = loss * float("nan")
        return loss, correct

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match=r"loss became nan by step 15.*last good checkpoint is step 10"):
        train(fast_config(tmp_path, steps=40, checkpoint_every=10))
    assert json.loads((tmp_path / "run" / "latest.json").read_text())["step"] == 10
    vitkit.load_model(tmp_path / "run")


def test_gradient_accumulation_matches_the_full_batch(tmp_path):
    # SGD: Adam would turn float rounding of near-zero gradients into full-size steps
    kw = dict(steps=6, checkpoint_every=0, augment={"crop": "none", "hflip": False}, optimizer="sgd", lr=0.05)
    train(fast_config(tmp_path, "full", **kw))
    train(fast_config(tmp_path, "accum", accum_steps=4, **kw))
    a, b = final_weights(tmp_path / "full"), final_weights(tmp_path / "accum")
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_two_processes_over_gloo_match_one_process(tmp_path):
    common = ["--data", "digits", "--model", "vit_ti4", "--img-size", "8", "--steps", "8", "--batch-size", "32",
              "--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--crop", "none", "--hflip", "false",
              "--log-every", "1", "--progress", "false", "--device", "cpu", "--checkpoint-every", "4",
              "--optimizer", "sgd", "--lr", "0.05"]  # SGD: Adam magnifies reduction-order rounding
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, "-m", "vitkit", "train", *common, "--out", str(tmp_path / "one")],
                            capture_output=True, text=True, env=env)
    assert single.returncode == 0, single.stderr
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                          "-m", "vitkit", "train", *common, "--out", str(tmp_path / "two")],
                         capture_output=True, text=True, env=env)
    assert ddp.returncode == 0, ddp.stderr[-3000:]

    def losses(run):
        rows = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return torch.tensor([r["loss"] for r in rows if r["kind"] == "train"])

    one, two = losses("one"), losses("two")
    assert len(one) == len(two) == 8
    assert torch.allclose(one, two, atol=1e-4), (one, two)
    a, b = final_weights(tmp_path / "one"), final_weights(tmp_path / "two")
    assert all(torch.allclose(a[k], b[k], atol=1e-4) for k in a)


def test_config_file_presets_and_overrides(tmp_path):
    cfg_path = tmp_path / "run.yaml"
    fast_config(tmp_path, steps=5, lr=0.01).save(cfg_path)
    result = CliRunner().invoke(main, ["train", "--config", str(cfg_path), "--lr", "0.005", "--mixup", "0.3",
                                       "--depth", "1", "--out", str(tmp_path / "cli"), "--json"])
    assert result.exit_code == 0, result.output
    summary = last_json_line(result.stdout)
    assert summary["steps"] == 5 and summary["run_dir"] == str(tmp_path / "cli")
    saved = TrainConfig.load(tmp_path / "cli" / "config.yaml")
    assert saved.lr == 0.005 and saved.augment.mixup == 0.3 and saved.model_overrides["depth"] == 1
    bad = CliRunner().invoke(main, ["train", "--lrr", "0.1"])
    assert bad.exit_code != 0 and "unknown config field 'lrr'" in bad.output
    again = CliRunner().invoke(main, ["train", "--config", str(cfg_path), "--out", str(tmp_path / "cli")])
    assert again.exit_code != 0 and "--resume" in again.output
    for name in ("paper-pretrain", "paper-finetune", "small-data", "digits", "cifar10-speedrun"):
        TrainConfig().with_overrides(preset_values(name))
    assert preset_values("paper-finetune")["optimizer"] == "sgd"
    speedrun = TrainConfig().with_overrides(preset_values("cifar10-speedrun"))
    model = vitkit.create_model(speedrun.model, img_size=32, num_classes=10, **speedrun.model_overrides)
    assert model.num_params() == 2_709_706 and model.patch_embed.grid((32, 32)) == (10, 10)  # as measured
    with pytest.raises(ValueError, match="compile_mode"):
        TrainConfig(compile_mode="fastest")


def test_default_job_reaches_95_percent_on_digits(tmp_path):
    result = CliRunner().invoke(main, ["train", "--out", str(tmp_path / "default"), "--json"])
    assert result.exit_code == 0, result.output
    summary = last_json_line(result.stdout)
    assert summary["val_top1"] >= 0.95, summary  # its time (35-40 s on 2 cores) is in the preset's docstring


def test_checkpoint_carries_preprocessing_and_class_names(tmp_path):
    summary = train(fast_config(tmp_path, steps=2, classes=[5, 6, 7]))
    model = vitkit.load_model(summary["run_dir"])
    assert model.config.class_names == ["5", "6", "7"] and model.config.num_classes == 3
    assert len(model.config.mean) == 1 and 0 < model.config.mean[0] < 1
    relabelled = vitkit.load_model(summary["run_dir"], num_classes=4)
    assert relabelled.config.class_names is None


def test_streamed_image_folder_trains_and_resumes_exactly(tmp_path, monkeypatch):
    from PIL import Image

    rng = torch.Generator().manual_seed(0)
    for c, name in enumerate(["cat", "dog"]):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(12):
            pixels = (torch.rand(20, 24, 3, generator=rng) * 80 + 120 * c).to(torch.uint8).numpy()
            Image.fromarray(pixels).save(tmp_path / "folder" / name / f"{i}.png")
    kw = dict(data=f"imagefolder:{tmp_path / 'folder'}", img_size=16, batch_size=8, steps=6, checkpoint_every=3,
              num_workers=0, val_fraction=0.25)
    train(fast_config(tmp_path, "straight", **kw))
    train_until_interrupted(monkeypatch, fast_config(tmp_path, "resumed", **kw), step=5)
    summary = train(TrainConfig(), resume=tmp_path / "resumed")
    assert 0 < summary["n_train"] < 24 and vitkit.load_model(tmp_path / "resumed").config.class_names == ["cat", "dog"]
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "resumed")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_default_preset_applies_only_to_the_default_job():
    from vitkit.cli.train import build_config

    default = build_config(None, None, {}, {})
    assert default.preset == "digits" and default.model_overrides["embed_dim"] == 64
    other_model = build_config(None, None, {"model": "vit_s4"}, {"depth": 7})
    assert other_model.model_overrides == {"depth": 7} and other_model.preset is None
    other_data = build_config(None, None, {"data": "cifar10:/x"}, {})
    assert other_data.preset is None and other_data.img_size is None
    preset_model = build_config(None, "small-data", {"model": "vit_ti4"}, {})
    assert preset_model.model_overrides == {"drop_path": 0.1} and preset_model.augment.mixup == 0.8


def test_augment_ahead_resumes_exactly_and_consumes_the_plans_order(tmp_path, monkeypatch):
    # batch 64 of ~1.6k digits: 25 steps an epoch; the interruption lands in epoch 1, whose
    # augmentation the resumed process must re-create from (seed, epoch) alone
    kw = dict(steps=40, batch_size=64, checkpoint_every=10, augment_ahead=True,
              augment={"auto": "trivialaugment", "mixup": 0.5, "cutmix": 0.5, "erase": 0.25},
              model_overrides=dict(embed_dim=32, depth=2, num_heads=2, drop_path=0.1))
    train(fast_config(tmp_path, "straight", **kw))
    train_until_interrupted(monkeypatch, fast_config(tmp_path, "interrupted", **kw), step=35)  # last ckpt: 30
    train(TrainConfig(), resume=tmp_path / "interrupted")
    a, b = final_weights(tmp_path / "straight"), final_weights(tmp_path / "interrupted")
    assert all(torch.equal(a[k], b[k]) for k in a), "resumed run differs from the uninterrupted one"
    train(fast_config(tmp_path, "per_step", **{**kw, "augment_ahead": False}))
    per_step = final_weights(tmp_path / "per_step")
    assert not all(torch.equal(a[k], per_step[k]) for k in a), "augment_ahead must change where draws come from"

    from vitkit.augment import AugmentConfig, BatchAugment
    from vitkit.train.ahead import EpochAugmentation
    from vitkit.train.batches import BatchPlan

    images = torch.randint(0, 256, (103, 3, 8, 8), dtype=torch.uint8)
    labels = torch.arange(103) % 10
    augment = BatchAugment(AugmentConfig(auto="trivialaugment"), 8, (0.5,) * 3, (0.25,) * 3, 10)
    plan = BatchPlan(103, 24, accum_steps=2, world=2, rank=1, seed=3)  # 4 steps of 2 x 2 x 6 images
    ahead = EpochAugmentation(augment, images, labels, plan, seed=3, chunk=10)
    for step in (4, 5, 7):  # epoch 1
        got = ahead.micro_batches(step)
        for (x, y), idx in zip(got, plan.micro_batches(step)):
            assert torch.equal(y, labels[idx]) and x.shape == (6, 3, 8, 8)
    first = ahead.x.clone()
    ahead.prepare(1)
    assert torch.equal(first, ahead.x), "an epoch's augmentation is a pure function of (seed, epoch, rank)"
    ahead.prepare(2)
    assert not torch.equal(first, ahead.x)


def test_augment_ahead_on_a_streamed_dataset_is_a_clear_error(tmp_path):
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / "folder" / name).mkdir(parents=True)
        for i in range(4):
            Image.new("RGB", (8, 8), (60 * i, 0, 0)).save(tmp_path / "folder" / name / f"{i}.png")
    config = fast_config(tmp_path, data=f"imagefolder:{tmp_path / 'folder'}", steps=2, batch_size=2,
                         num_workers=0, augment_ahead=True)
    with pytest.raises(ValueError, match="augment_ahead needs an in-memory dataset"):
        train(config)


def test_graph_step_refuses_what_it_cannot_capture(tmp_path):
    with pytest.raises(ValueError, match="graph_step is not possible here: it needs a CUDA device"):
        train(fast_config(tmp_path, steps=2, device="cpu", graph_step=True))
    with pytest.raises(ValueError, match="mixup/cutmix.*compile_mode 'reduce-overhead'"):
        from vitkit.train.graphed import check_graph_step

        check_graph_step(device=torch.device("cuda"), world=1, accum_steps=1, optimizer="adamw", mixup=0.2,
                         cutmix=0.0, compile_mode="reduce-overhead")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
def test_graph_step_trains_like_the_eager_step_on_a_gpu(tmp_path):
    # fp32, no randomness in the step: the captured step must follow the eager one closely (capturable
    # AdamW computes its bias corrections on the device, so not bit for bit)
    kw = dict(steps=40, device="cuda", precision="fp32", checkpoint_every=0, log_every=1, augment_ahead=True,
              augment={"auto": "trivialaugment"})
    eager = train(fast_config(tmp_path, "eager", **kw))
    graphed = train(fast_config(tmp_path, "graphed", graph_step=True, **kw))

    def losses(run):
        rows = [json.loads(ln) for ln in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return torch.tensor([r["loss"] for r in rows if r["kind"] == "train"])

    a, b = losses("eager"), losses("graphed")
    assert len(a) == len(b) == 40 and torch.allclose(a, b, rtol=1e-3, atol=1e-4), (a, b)
    assert abs(eager["val_top1"] - graphed["val_top1"]) <= 0.01
    w1, w2 = final_weights(tmp_path / "eager"), final_weights(tmp_path / "graphed")
    assert all(torch.allclose(w1[k], w2[k], atol=1e-3) for k in w1)
