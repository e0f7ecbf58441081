"""The training loop, as a few named phases: set up, (resume), step, log, evaluate, checkpoint, finish."""

from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from vitkit.augment import BatchAugment, preprocess_eval, soft_target_cross_entropy
from vitkit.data import ArraySplit, DataBundle, load_data
from vitkit.data.splits import nested_subset
from vitkit.evaluate import EvalResult, evaluate, split_batches
from vitkit.optim import build_optimizer, build_scheduler
from vitkit.train import distributed as dist_utils
from vitkit.train.ahead import EpochAugmentation
from vitkit.train.batches import BatchPlan, PlanSampler
from vitkit.train.config import TrainConfig
from vitkit.train.graphed import GraphedStep, check_graph_step
from vitkit.train.metrics import MetricsLog, plot_curves
from vitkit.train.state import (latest_checkpoint, load_training_state, rng_state, save_checkpoint,
                                set_rng_state)


# Time budget: step time is measured over CALIBRATION_STEPS steps after SETTLE_STEPS (compilation
# and CUDA-graph recording happen in the first few), then the schedule is fitted with a safety margin.
# It is re-fitted once more after REFIT_FRACTION of the remaining run, from a window that spans
# whole epochs (per-epoch work such as augment_ahead, and clock drift, are then counted).
SETTLE_STEPS, CALIBRATION_STEPS, BUDGET_MARGIN, REFIT_FRACTION = 30, 100, 0.97, 0.2


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""


@dataclass
class Timer:
    """Training wall-clock, excluding evaluation and checkpoint writing (synchronised on CUDA)."""

    device: torch.device
    total: float = 0.0
    _start: float | None = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def start(self) -> None:
        self._sync()
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        """Seconds so far, including the running interval (synchronises)."""
        if self._start is None:
            return self.total
        self._sync()
        return self.total + time.perf_counter() - self._start

    def stop(self) -> None:
        if self._start is not None:
            self._sync()
            self.total += time.perf_counter() - self._start
            self._start = None


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA device")
        return torch.device("cuda", local_rank)
    return torch.device(name)


def default_run_dir() -> Path:
    return Path("runs") / time.strftime("%Y%m%d-%H%M%S")


def build_model(config: TrainConfig, data: DataBundle, img_size: int | tuple[int, int]) -> torch.nn.Module:
    """A zoo model for the data (ViT, hybrid or BiT), or the init checkpoint adapted to it (new head,
    new resolution)."""
    from vitkit.train.finetune import pretrained_model
    from vitkit.variants import create_model

    if config.init_checkpoint:
        return pretrained_model(config.init_checkpoint, data, img_size, config.model_overrides, config.keep_head)
    return create_model(config.model, in_chans=data.in_chans, img_size=img_size, num_classes=data.num_classes,
                        mean=tuple(data.mean), std=tuple(data.std), class_names=list(data.class_names),
                        **config.model_overrides)


class Trainer:
    """Owns one run. `run()` returns the summary dict (also written to RUN_DIR/summary.json)."""

    def __init__(self, config: TrainConfig, run_dir: Path, resume: bool = False, console: Console | None = None) -> None:
        self.config = config
        self.run_dir = run_dir
        self.resume = resume
        self.console = console or Console(stderr=True)
        self.dist = dist_utils.init(config.device)
        self.is_main = self.dist.rank == 0
        self.device = resolve_device(config.device, self.dist.local_rank)
        self.amp_dtype = self._amp_dtype()

    # ---- phases ---------------------------------------------------------------------------
    def _amp_dtype(self) -> torch.dtype | None:
        p = self.config.precision
        if p == "bf16" or (p == "auto" and self.device.type == "cuda"):
            return torch.bfloat16
        return None

    def setup(self) -> None:
        c = self.config
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            c.save(self.run_dir / "config.yaml")
        torch.manual_seed(c.seed)  # identical model init on every process
        self.data = load_data(c.data, val_fraction=c.val_fraction, seed=c.seed, image_size=c.img_size,
                              classes=c.classes)
        if c.train_fraction < 1.0:  # the same images for every model trained with this seed
            self.data.train = self.data.train.subset(nested_subset(self.data.train.labels, c.train_fraction, c.seed))
        size = c.img_size or self.data.image_size
        self.img_size = (size, size) if isinstance(size, int) else tuple(size)
        self.model = build_model(c, self.data, self.img_size).to(self.device)
        self.model.grad_checkpointing = c.grad_checkpointing
        if c.speed:
            from vitkit.speed import SpeedOptions, configure

            configure(self.model, SpeedOptions.parse(c.speed))
        # The model's own normalisation: the data's for a new model, the checkpoint's when fine-tuning
        self.mean, self.std = self.model.config.mean, self.model.config.std
        self.augment = BatchAugment(c.augment, self.img_size, self.mean, self.std, self.data.num_classes)
        if c.compile and c.compile_augment and self.device.type == "cuda":
            self.augment.compile_image_ops()
        n_train = len(self.data.train.labels) if isinstance(self.data.train, ArraySplit) else len(self.data.train)
        self.plan = BatchPlan(n_train, c.batch_size, c.accum_steps, self.dist.world, self.dist.rank, c.seed)
        self.total_steps = c.steps or max(1, math.ceil(c.epochs * self.plan.steps_per_epoch))
        self.length_cap = self.total_steps  # a time budget never lengthens the configured run
        warmup = c.warmup_steps if c.warmup_steps is not None else int(c.warmup_fraction * self.total_steps)
        if c.graph_step:
            check_graph_step(device=self.device, world=self.dist.world, accum_steps=c.accum_steps,
                             optimizer=c.optimizer, mixup=c.augment.mixup, cutmix=c.augment.cutmix,
                             compile_mode=c.compile_mode if c.compile else "default")
        self.optimizer = build_optimizer(self.model, c.optimizer, c.lr, c.weight_decay, c.betas, c.momentum, c.nesterov,
                                         capturable=c.graph_step)
        self.scheduler = build_scheduler(self.optimizer, self.total_steps, warmup, c.schedule, c.lr, c.lr_end)
        self.warmup_steps = warmup
        self.schedule_fitted = False
        self.ema = None
        if c.ema_decay > 0:
            self.ema = torch.optim.swa_utils.AveragedModel(
                self.model, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(c.ema_decay), use_buffers=True)
        self.step_model: torch.nn.Module = self.model
        if c.compile and self.device.type == "cuda":
            from vitkit.speed import compile_model

            # static shapes (the batch plan drops the tail): see vitkit.bench for why never dynamic
            self.step_model = compile_model(self.model, None if c.compile_mode == "default" else c.compile_mode)
        self.graphed = GraphedStep(self.model, self.step_model, self.optimizer, self.data.num_classes,
                                   c.augment.label_smoothing, self.amp_dtype, c.grad_clip) if c.graph_step else None
        if self.dist.world > 1:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.step_model = torch.nn.parallel.DistributedDataParallel(self.step_model, device_ids=ids)
        if isinstance(self.data.train, ArraySplit):
            self.train_images = self.data.train.images.to(self.device)
            self.train_labels = self.data.train.labels.to(self.device)
        self.ahead: EpochAugmentation | None = None
        if c.augment_ahead:
            if not isinstance(self.data.train, ArraySplit):
                raise ValueError(f"augment_ahead needs an in-memory dataset (digits, cifar10, an .npz bundle); "
                                 f"{c.data!r} is streamed from disk: leave augment_ahead off")
            self.ahead = EpochAugmentation(self.augment, self.train_images, self.train_labels, self.plan, c.seed)
        self.start_step = 0
        self.last_good_step: int | None = None
        self.timer_offset = 0.0

    def restore(self) -> None:
        """Continue from the newest checkpoint: weights, optimiser, scheduler, EMA, RNG, step."""
        pointer = latest_checkpoint(self.run_dir)
        if pointer is None:
            raise FileNotFoundError(f"{self.run_dir} has no checkpoint to resume from (no latest.json)")
        if pointer.get("final"):
            raise RuntimeError(f"{self.run_dir} already finished (step {pointer['step']}); nothing to resume")
        state = load_training_state(self.run_dir, pointer)
        from vitkit.checkpoints.common import read_safetensors

        weights, _ = read_safetensors(self.run_dir / pointer["model"])
        self.model.load_state_dict(weights)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(state["ema"])
        rngs = state["rng"]
        set_rng_state(rngs[self.dist.rank] if self.dist.rank < len(rngs) else rngs[0])
        self.start_step = state["step"]
        if state.get("schedule_fitted", False):  # a time-budget run keeps the length it was fitted to
            self.total_steps, self.schedule_fitted = state["total_steps"], True
        else:  # the config decides (it may have been edited to change the length)
            schedule = self.scheduler.lr_lambdas[0]
            schedule.total, schedule.warmup = self.total_steps, self.warmup_steps
        self.last_good_step = state["step"]
        self.timer_offset = state.get("seconds", 0.0)

    def training_state(self, step: int, seconds: float) -> dict[str, Any]:
        return {"step": step, "optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                "ema": self.ema.state_dict() if self.ema is not None else None,
                "rng": self.dist.gather_objects(rng_state()), "seconds": seconds,
                "total_steps": self.total_steps, "schedule_fitted": self.schedule_fitted}

    def micro_batches(self, step: int, loader_iter) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self.ahead is not None:
            return self.ahead.micro_batches(step)
        if loader_iter is None:
            return [(self.train_images[i], self.train_labels[i]) for i in self.plan.micro_batches(step, self.device)]
        out = []
        for _ in range(self.plan.accum):
            images, labels = next(loader_iter)
            out.append((images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)))
        return out

    def train_step(self, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimiser step over the accumulation micro-batches; returns (loss, correct) on device."""
        if self.graphed is not None:
            ((images, labels),) = batches
            x = images if self.ahead is not None else self.augment.image_ops(images)
            loss, correct = self.graphed(x, labels)
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.model)
            return loss, correct
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device, dtype=torch.long)
        for m, (images, labels) in enumerate(batches):
            x, targets = self.augment.mix(images, labels) if self.ahead is not None else self.augment(images, labels)
            last = m == len(batches) - 1
            no_sync = self.step_model.no_sync if self.dist.world > 1 and not last else contextlib.nullcontext
            with no_sync(), torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
                logits = self.step_model(x)
                loss = soft_target_cross_entropy(logits.float(), targets) / len(batches)
            loss.backward()
            loss_sum += loss.detach()
            correct += (logits.detach().argmax(-1) == labels).sum()
        if self.config.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        if self.ema is not None:
            self.ema.update_parameters(self.model)
        return loss_sum, correct

    def validate(self) -> EvalResult | None:
        if self.data.val is None:
            return None
        model = self.ema.module if self.ema is not None else self.model
        batches = split_batches(self.data.val, self.config.eval_batch_size, self.device, self.config.num_workers,
                                self.dist.rank, self.dist.world)
        return evaluate(model, batches, self.data.num_classes,
                        lambda u8: preprocess_eval(u8, self.img_size, self.mean, self.std),
                        self.amp_dtype, reduce=self.dist.all_reduce_sum if self.dist.world > 1 else None)

    def checkpoint(self, step: int, seconds: float, final: bool = False) -> None:
        model = self.ema.module if (final and self.ema is not None) else self.model
        state = self.training_state(step, seconds)  # collective: every rank takes part
        if self.is_main:
            save_checkpoint(self.run_dir, step, model, state, self.config.keep_checkpoints, final=final)
        self.last_good_step = step

    def fit_to_budget(self, done: int, elapsed: float, step_seconds: float) -> None:
        """Shorten the run so it ends within `time_budget`: the decay is re-fitted to the new length
        (same shape), the warm-up keeps its fraction. Never lengthens the epoch/step-based run."""
        c = self.config
        if self.dist.world > 1:  # every process must agree on the length: take the slowest
            measured = torch.tensor([elapsed, step_seconds], dtype=torch.float64, device=self.device)
            elapsed, step_seconds = self.dist.all_reduce_max(measured).tolist()
        remaining = c.time_budget - elapsed
        fitted = done + max(0, int(BUDGET_MARGIN * remaining / step_seconds))
        self.total_steps = max(done + 1, min(self.length_cap, fitted))
        schedule = self.scheduler.lr_lambdas[0]
        schedule.total = self.total_steps
        if c.warmup_steps is None and done < schedule.warmup:  # never re-enter a finished warm-up
            schedule.warmup = max(done, int(c.warmup_fraction * self.total_steps))
        self.schedule_fitted = True

    def check_finite(self, window_loss: torch.Tensor, step: int) -> float:
        value = float(window_loss)
        if not math.isfinite(value):
            where = (f"the last good checkpoint is step {self.last_good_step} in {self.run_dir}"
                     if self.last_good_step is not None else "no checkpoint had been written yet")
            raise TrainingDiverged(
                f"loss became {value} by step {step}; training stopped. {where}. Try a lower --lr, "
                f"a longer warm-up, or --grad-clip 1.0, and resume with --resume {self.run_dir}")
        return value

    # ---- the loop -------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        self.setup()
        if self.resume:
            self.restore()
        c = self.config
        metrics = MetricsLog(self.run_dir, c.tensorboard, self.start_step) if self.is_main else None
        loader_iter = None
        if not isinstance(self.data.train, ArraySplit):
            sampler = PlanSampler(self.plan, self.start_step, self.total_steps)
            loader = torch.utils.data.DataLoader(self.data.train, batch_sampler=sampler, num_workers=c.num_workers,
                                                 pin_memory=self.device.type == "cuda", persistent_workers=False,
                                                 # its own generator: iter() must not draw from the global
                                                 # RNG, or a resumed run's augmentation would shift
                                                 generator=torch.Generator().manual_seed(c.seed))
            loader_iter = iter(loader)
        timer = Timer(self.device, total=self.timer_offset)
        window_loss = torch.zeros((), device=self.device)
        window_correct = torch.zeros((), device=self.device, dtype=torch.long)
        window_steps, window_start = 0, time.perf_counter()
        micro_examples = self.plan.micro * self.plan.accum * self.dist.world
        eval_every = c.eval_every or self.plan.steps_per_epoch
        val: EvalResult | None = None
        progress = self._progress()
        task = progress.add_task("train", total=self.total_steps, completed=self.start_step, loss=float("nan"),
                                 acc=float("nan"), ips=0.0)
        self.model.train()
        with progress:
            timer.start()
            calibrate_from = self.start_step + SETTLE_STEPS
            calibration_start = 0.0
            refit: tuple[int, int, float] | None = None  # (at step, window start step, its elapsed time)
            step = self.start_step
            while step < self.total_steps:
                if c.time_budget and not self.schedule_fitted and step == calibrate_from:
                    calibration_start = timer.elapsed()
                if c.time_budget and not self.schedule_fitted and step == calibrate_from + CALIBRATION_STEPS:
                    now = timer.elapsed()
                    self.fit_to_budget(step, now, (now - calibration_start) / CALIBRATION_STEPS)
                    refit = (step + max(CALIBRATION_STEPS, int(REFIT_FRACTION * (self.total_steps - step))), step, now)
                    progress.update(task, total=self.total_steps)
                elif refit is not None and step == refit[0]:
                    now = timer.elapsed()
                    self.fit_to_budget(step, now, (now - refit[2]) / (step - refit[1]))
                    refit = None
                    progress.update(task, total=self.total_steps)
                loss, correct = self.train_step(self.micro_batches(step, loader_iter))
                window_loss += loss
                window_correct += correct
                window_steps += 1
                done = step + 1
                if done % c.log_every == 0 or done == self.total_steps:
                    if self.dist.world > 1:  # log the global batch's loss, not rank 0's share
                        window_loss = self.dist.all_reduce_sum(window_loss) / self.dist.world
                        window_correct = self.dist.all_reduce_sum(window_correct)
                    mean_loss = self.check_finite(window_loss, done) / window_steps
                    acc = float(window_correct) / (window_steps * micro_examples)
                    ips = window_steps * micro_examples / max(time.perf_counter() - window_start, 1e-9)
                    if metrics:
                        metrics.write({"kind": "train", "step": done, "epoch": self.plan.epoch_of(done),
                                       "loss": mean_loss, "top1": acc, "lr": float(self.scheduler.get_last_lr()[0]),
                                       "images_per_s": ips})
                    progress.update(task, completed=done, loss=mean_loss, acc=acc, ips=ips)
                    window_loss.zero_(), window_correct.zero_()
                    window_steps, window_start = 0, time.perf_counter()
                if done % eval_every == 0 and done != self.total_steps:
                    timer.stop()
                    val = self.validate()
                    if metrics and val:
                        metrics.write({"kind": "val", "step": done, "epoch": self.plan.epoch_of(done), **val.summary()})
                    timer.start()
                if c.checkpoint_every and done % c.checkpoint_every == 0 and done != self.total_steps:
                    timer.stop()
                    self.check_finite(window_loss, done)
                    self.checkpoint(done, timer.total)
                    timer.start()
                step += 1
            timer.stop()
        return self.finish(timer.total, metrics)

    def finish(self, seconds: float, metrics: MetricsLog | None) -> dict[str, Any]:
        self.checkpoint(self.total_steps, seconds, final=True)
        val = self.validate()
        summary = {
            "val_top1": val.top1 if val else None, "val_top5": val.top5 if val else None,
            "val_loss": val.loss if val else None, "epochs": self.plan.epoch_of(self.total_steps),
            "steps": self.total_steps, "seconds": seconds,
            "images_per_s": self.total_steps * self.config.batch_size / max(seconds, 1e-9),
            "run_dir": str(self.run_dir), "model": self.config.model, "data": self.config.data,
            "params": self.model.num_params(), "n_train": self.plan.n, "world_size": self.dist.world,
            "device": str(self.device), "precision": str(self.amp_dtype or "fp32"),
            "graph_step": self.graphed is not None and self.graphed.graph is not None,
        }
        if metrics is not None:
            if val:
                metrics.write({"kind": "val", "step": self.total_steps, "epoch": summary["epochs"], **val.summary()})
            metrics.close()
            plot_curves(metrics.path, self.run_dir / "curves.png")
            import json

            (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        self.dist.barrier()
        return summary

    def _progress(self) -> Progress:
        return Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("loss {task.fields[loss]:.3f}"), TextColumn("acc {task.fields[acc]:.3f}"),
            TextColumn("{task.fields[ips]:,.0f} img/s"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, disable=not (self.config.progress and self.is_main), transient=False)


def train(config: TrainConfig, resume: str | Path | None = None, console: Console | None = None) -> dict[str, Any]:
    """Train (or resume) a run; returns the summary. With `resume`, the run's own config is used."""
    if resume is not None:
        run_dir = Path(resume)
        if not (run_dir / "config.yaml").is_file():
            raise FileNotFoundError(f"{run_dir} is not a run directory (no config.yaml)")
        config = TrainConfig.load(run_dir / "config.yaml")
    else:
        run_dir = Path(config.out) if config.out else default_run_dir()
        if latest_checkpoint(run_dir) is not None:
            raise FileExistsError(f"{run_dir} already holds a run; continue it with --resume {run_dir} "
                                  "or choose another --out")
    trainer = Trainer(config, run_dir, resume=resume is not None, console=console)
    try:
        return trainer.run()
    finally:
        dist_utils.shutdown(trainer.dist)
