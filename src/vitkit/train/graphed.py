"""The whole optimiser step as one CUDA graph: forward, loss, backward, gradient clipping and AdamW.

Why: a small model's step is a few hundred short kernels; when the host needs longer to launch
them (plus autograd's and the optimiser's Python) than the GPU needs to run them, the GPU idles.
`torch.compile`'s CUDA graphs (`reduce-overhead`) cover forward and backward but leave the loss,
clipping and the optimiser to the host. Capturing everything makes a step a few copies into static
buffers and one replay. Measured (docs/speedrun.md, sweep E): it buys nothing for the CIFAR-10
speedrun once `augment_ahead` is on, because that step is bound by GPU kernel latency, not the
host; it is for steps that are host-bound.

How (PyTorch's whole-network capture recipe): a few eager steps on a side stream (compilation,
optimiser state, library workspaces), gradients set to None, then one capture. Backward writes the
gradients into the graph's memory on every replay; AdamW is fused and `capturable`, its learning
rate a device tensor that the scheduler fills each step. Dropout / drop-path draw from the
generator's graph-safe state, so each replay gets fresh randomness.

Limits: CUDA, one process, no gradient accumulation, AdamW, no mixup/cutmix (they draw Python
numbers per batch). Resuming restores weights, optimiser and schedule exactly, but the random
draws inside the graph (drop-path) are not replayed bit for bit.
"""

from __future__ import annotations

import warnings

import torch

from vitkit.augment import smooth_targets, soft_target_cross_entropy

WARMUP_STEPS = 3  # eager steps before capture (PyTorch's recipe uses 3; compilation happens in the first)


def check_graph_step(*, device: torch.device, world: int, accum_steps: int, optimizer: str, mixup: float,
                     cutmix: float, compile_mode: str) -> None:
    """Raise ValueError naming what rules out a whole-step graph."""
    problems = []
    if device.type != "cuda":
        problems.append(f"it needs a CUDA device (got {device})")
    if world > 1:
        problems.append("it runs in one process only (no DDP)")
    if accum_steps != 1:
        problems.append("it needs accum_steps 1")
    if optimizer != "adamw":
        problems.append("it needs optimizer adamw (fused, capturable)")
    if mixup > 0 or cutmix > 0:
        problems.append("mixup/cutmix draw per-batch Python numbers: turn them off")
    if compile_mode in ("reduce-overhead", "max-autotune"):
        problems.append(f"compile_mode {compile_mode!r} records its own CUDA graphs: use default or "
                        "max-autotune-no-cudagraphs")
    if problems:
        raise ValueError("graph_step is not possible here: " + "; ".join(problems))


class GraphedStep:
    """Call with an augmented float batch and its labels; returns (loss, correct) device tensors that
    stay valid until the next call."""

    def __init__(self, model: torch.nn.Module, runner: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 num_classes: int, label_smoothing: float, amp_dtype: torch.dtype | None,
                 grad_clip: float | None) -> None:
        self.model, self.runner, self.optimizer = model, runner, optimizer
        self.num_classes, self.label_smoothing = num_classes, label_smoothing
        self.amp_dtype, self.grad_clip = amp_dtype, grad_clip
        self.calls = 0
        self.failed = False  # capture failed: every step runs eagerly
        self.graph: torch.cuda.CUDAGraph | None = None
        self.static: dict[str, torch.Tensor] = {}
        self.lr_tensors: list[torch.Tensor] = []

    def body(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The step itself, the same eagerly and under capture (no host syncs, no Python randomness)."""
        targets = smooth_targets(labels, self.num_classes, self.label_smoothing)
        with torch.autocast("cuda", dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            logits = self.runner(x)
        loss = soft_target_cross_entropy(logits.float(), targets)
        loss.backward()
        if self.grad_clip:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip, foreach=True)
        self.optimizer.step()
        return loss.detach(), (logits.detach().argmax(-1) == labels).sum()

    def __call__(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        if self.graph is None and self.calls <= WARMUP_STEPS:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.optimizer.zero_grad(set_to_none=True)
                out = self.body(x, labels)
            torch.cuda.current_stream().wait_stream(side)
            return out
        if self.failed:
            self.optimizer.zero_grad(set_to_none=True)
            return self.body(x, labels)
        if self.graph is None:
            try:
                self.capture(x, labels)
            except RuntimeError as e:  # keep training (eagerly) rather than lose the run
                warnings.warn(f"graph_step: capture failed ({e}); continuing with eager steps", stacklevel=2)
                self.failed, self.graph = True, None
                torch.cuda.synchronize()
                self.optimizer.zero_grad(set_to_none=True)
                return self.body(x, labels)
        self.static["x"].copy_(x)
        self.static["labels"].copy_(labels)
        for group, lr in zip(self.optimizer.param_groups, self.lr_tensors):
            if group["lr"] is not lr:  # a scheduler that assigns floats instead of filling the tensor
                lr.fill_(float(group["lr"]))
                group["lr"] = lr
        assert self.graph is not None
        self.graph.replay()
        return self.static["loss"], self.static["correct"]

    def capture(self, x: torch.Tensor, labels: torch.Tensor) -> None:
        self.static["x"], self.static["labels"] = x.clone(), labels.clone()
        for group in self.optimizer.param_groups:  # the graph reads the learning rate from memory
            if not torch.is_tensor(group["lr"]):
                group["lr"] = torch.tensor(float(group["lr"]), device=x.device)
            self.lr_tensors.append(group["lr"])
        self.optimizer.zero_grad(set_to_none=True)  # backward allocates the gradients inside the graph
        torch.cuda.synchronize()
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.static["loss"], self.static["correct"] = self.body(self.static["x"], self.static["labels"])
