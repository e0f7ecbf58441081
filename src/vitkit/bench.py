"""Side-by-side throughput: vitkit against timm and Hugging Face on the same device, in one process.

Every implementation gets the same architecture, batch, precision (bf16 autocast on CUDA), optimiser
(fused AdamW) and timing method (CUDA events around K steps after a warm-up, median of repeats).
FLOPs are counted per implementation with PyTorch's FLOP counter; MFU is achieved FLOP/s over a
bf16 matrix-multiply ceiling measured in the same process.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from vitkit.config import ViTConfig
from vitkit.flops import count_forward_flops
from vitkit.variants import model_config


@dataclass
class BenchResult:
    impl: str
    mode: str
    compiled: bool
    batch: int
    img_s: float
    step_ms: float
    peak_mem_gib: float | None
    tflops: float | None
    mfu: float | None
    gflops_per_image: float
    host_ms: float | None = None  # CUDA: the host's time to launch one step (see host_step_ms)

    def to_dict(self) -> dict:
        return asdict(self)


# ---- implementations ----------------------------------------------------------------------------
def build_vitkit(config: ViTConfig) -> torch.nn.Module:
    from vitkit.model import VisionTransformer

    return VisionTransformer(config)


def build_timm(config: ViTConfig) -> torch.nn.Module:
    from timm.models.vision_transformer import VisionTransformer as TimmViT

    return TimmViT(img_size=config.img_size, patch_size=config.patch_size, in_chans=config.in_chans,
                   num_classes=config.num_classes, embed_dim=config.embed_dim, depth=config.depth,
                   num_heads=config.num_heads, mlp_ratio=config.mlp_dim / config.embed_dim,
                   qkv_bias=config.qkv_bias, global_pool="token" if config.pool == "cls" else "avg")


class HFLogits(torch.nn.Module):
    """transformers' ViTForImageClassification returning plain logits."""

    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        import transformers

        hf_config = transformers.ViTConfig(
            hidden_size=config.embed_dim, num_hidden_layers=config.depth, num_attention_heads=config.num_heads,
            intermediate_size=config.mlp_dim, image_size=config.img_size[0], patch_size=config.patch_size,
            num_channels=config.in_chans, num_labels=config.num_classes, layer_norm_eps=config.norm_eps,
            hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        hf_config._attn_implementation = "sdpa"
        self.model = transformers.ViTForImageClassification(hf_config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(pixel_values=x).logits


BUILDERS: dict[str, Callable[[ViTConfig], torch.nn.Module]] = {
    "vitkit": build_vitkit, "timm": build_timm, "hf": HFLogits}


def available(impl: str) -> bool:
    try:
        __import__({"vitkit": "vitkit", "timm": "timm", "hf": "transformers"}[impl])
        return True
    except ImportError:
        return False


# ---- measurement --------------------------------------------------------------------------------
def matmul_ceiling_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float | None:
    """bf16 n x n x n matrix product rate on random data, median of repeats."""
    if device.type != "cuda":
        return None
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    ms = time_steps(lambda: a @ b, device, warmup=3, iters=5, repeats=repeats)
    return 2 * n**3 / (ms * 1e-3) / 1e12


def cuda_block_ms(step: Callable[[], object], iters: int) -> float:
    """Milliseconds per call of `iters` back-to-back calls of `step`, timed with CUDA events."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        step()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / iters


def time_steps(step: Callable[[], object], device: torch.device, warmup: int, iters: int, repeats: int,
               settle_s: float = 0.0) -> float:
    """Median milliseconds per call of `step` over `repeats` timed blocks of `iters` calls.

    settle_s: after the warm-up, keep calling `step` for this many seconds before timing. A GPU held at
    its power cap (an H200 at 700 W in a long training run) lowers its clocks within about a second,
    so a short window right after warm-up times the boost; settling times the clocks a long job gets.
    """
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    while time.perf_counter() - start < settle_s:
        for _ in range(max(iters, 1)):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the host's clock must not run ahead of the queued work
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            times.append(cuda_block_ms(step, iters))
        else:
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            times.append((time.perf_counter() - t0) * 1e3 / iters)
    return statistics.median(times)


def time_graph(step: Callable[[], object], calls: int = 10, warmup: int = 3, repeats: int = 20,
               iters: int = 1) -> float:
    """Median milliseconds per call of `step` (CUDA), `calls` calls captured in one CUDA graph and replayed
    (`iters` replays per timed block).

    The figure is the kernels' time without the host's launches, which at small shapes (or for ops
    reached through ctypes or Triton's launcher) take longer than the kernels. The warm-up calls run
    outside the capture, on a side stream as capture wants: compilation, autotuning and allocation.
    """
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(warmup):
            step()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            step()
    return time_steps(graph.replay, torch.device("cuda"), warmup=2, iters=iters, repeats=repeats) / calls


def kernel_names(step: Callable[[], object]) -> list[str]:
    """The CUDA kernels one call of `step` launches (names cut to 90 characters), for micro-benchmarks
    that want to say which library kernel ran."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        step()
        torch.cuda.synchronize()
    return sorted({e.name[:90] for e in prof.events() if e.device_type == torch.autograd.DeviceType.CUDA})


def host_step_ms(step: Callable[[], object], device: torch.device, repeats: int = 5) -> float | None:
    """Median milliseconds the host takes to launch one step onto an idle GPU (None off CUDA).

    Compared with the step's GPU time it says which one bounds the step: when launching takes longer
    than running, the GPU waits for Python (a small model's few hundred short kernels on a slow host),
    and CUDA graphs (`--compile-mode reduce-overhead`) are the remedy (docs/benchmarks.md section 12).
    """
    if device.type != "cuda":
        return None
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize(device)
        start = time.perf_counter()
        step()
        times.append((time.perf_counter() - start) * 1e3)
    torch.cuda.synchronize(device)
    return statistics.median(times)


def host_bound(result: dict) -> bool:
    """Whether a bench result's step waited on the host: launching it took longer than 90% of running it."""
    return result.get("host_ms") is not None and result["host_ms"] >= 0.9 * result["step_ms"]


def make_step(model: torch.nn.Module, mode: str, x: torch.Tensor, y: torch.Tensor,
              amp: torch.dtype | None) -> Callable[[], object]:
    device_type = x.device.type
    if mode == "infer":
        model.eval()

        def infer() -> object:
            with torch.inference_mode(), torch.autocast(device_type, dtype=amp, enabled=amp is not None):
                return model(x)
        return infer
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device_type == "cuda" or None)

    def train_step() -> object:
        with torch.autocast(device_type, dtype=amp, enabled=amp is not None):
            loss = F.cross_entropy(model(x).float(), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss
    return train_step


def build_step(impl: str, config: ViTConfig, mode: str, batch: int, device: torch.device, speed: str = "",
               compile: bool = True, compile_mode: str | None = None) -> Callable[[], object]:
    """One implementation's step on a seeded random batch, as the bench times it: the model built and
    moved to `device`, vitkit's speed options applied, compiled (static shapes), under bf16 autocast on
    CUDA. Scripts that measure the step some other way (profiles, clocks) build it here too."""
    torch.manual_seed(0)
    model = BUILDERS[impl](config).to(device)
    x = torch.randn(batch, config.in_chans, *config.img_size, device=device)
    y = torch.randint(0, max(config.num_classes, 1), (batch,), device=device)
    amp = torch.bfloat16 if device.type == "cuda" else None
    # not at the top: vitkit.layers imports this module
    from vitkit.speed import SpeedOptions, compile_model, configure

    if impl == "vitkit" and speed:
        configure(model, SpeedOptions.parse(speed))
    # static shapes: a second batch shape in one process recompiles instead of compiling dynamically,
    # which fails inside Inductor for these models on PyTorch 2.11 (docs/benchmarks.md section 10)
    runner = compile_model(model, compile_mode) if compile else model
    return make_step(runner, mode, x, y, amp)


def bench_one(impl: str, config: ViTConfig, mode: str, batch: int, device: torch.device, compile: bool,
              ceiling: float | None, warmup: int, iters: int, repeats: int, speed: str = "",
              compile_mode: str | None = None, settle_s: float = 0.0) -> BenchResult:
    from vitkit.speed import SpeedOptions  # not at the top: vitkit.layers imports this module

    # the function's FLOPs, the same for every implementation of it: counted on vitkit's model on the meta
    # device, where PyTorch's counter sees attention (on a CPU its SDPA kernel goes uncounted); except
    # where a speed switch leaves work out (last_block_cls: the last block for the class token alone),
    # then the work that runs, so that TFLOP/s and MFU stay the hardware's
    flops_per_image = count_forward_flops(config, last_block_cls=impl == "vitkit" and
                                          SpeedOptions.parse(speed).last_block_cls)
    step = build_step(impl, config, mode, batch, device, speed, compile, compile_mode)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats(device)
    ms = time_steps(step, device, warmup, iters, repeats, settle_s)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    host = host_step_ms(step, device)
    step_flops = flops_per_image * batch * (3 if mode == "train" else 1)
    tflops = step_flops / (ms * 1e-3) / 1e12
    del step  # the model, its compiled runner and the batch go with it
    if device.type == "cuda":
        torch.cuda.empty_cache()
    label = f"{impl}[{speed}]" if impl == "vitkit" and speed else impl
    return BenchResult(label, mode, compile, batch, batch / (ms * 1e-3), ms, peak,
                       tflops if device.type == "cuda" else None,
                       tflops / ceiling if ceiling else None, flops_per_image / 1e9, host)


def run_bench(model: str = "vit_b16", img_size: int = 224, batch: int = 256, modes: tuple[str, ...] = ("train",),
              compile: bool = False, compare: tuple[str, ...] = (), device: str = "auto",
              warmup: int = 5, iters: int = 10, repeats: int = 5, progress: Callable[[str], None] | None = None,
              speed_variants: tuple[str, ...] = ("",), compile_mode: str | None = None, settle_s: float = 0.0,
              **overrides) -> dict:
    """Measure vitkit and each installed peer; returns {"ceiling_tflops", "results": [...], "env"}.

    settle_s: seconds of steps before each timing (`time_steps`), for clocks a long run holds."""
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else
                       ("cpu" if device == "auto" else device))
    config = model_config(model, img_size=img_size, **overrides)
    ceiling = matmul_ceiling_tflops(dev)
    impls = ["vitkit"] + [p for p in compare if p != "vitkit"]
    skipped = [p for p in impls if not available(p)]
    results, failed = [], []
    runs = [(impl, speed) for impl in impls if impl not in skipped
            for speed in (speed_variants if impl == "vitkit" else ("",))]
    for mode in modes:
        for impl, speed in runs:
            if progress:
                progress(f"{impl}{f'[{speed}]' if speed else ''} {mode}{' compiled' if compile else ''}")
            try:
                results.append(bench_one(impl, config, mode, batch, dev, compile, ceiling, warmup, iters, repeats,
                                         speed, compile_mode, settle_s))
            except Exception as e:  # noqa: BLE001 -- one failing variant must not lose the others' numbers
                failed.append({"impl": impl, "speed": speed, "mode": mode, "error": f"{type(e).__name__}: {e}"[:300]})
                if progress:
                    progress(f"FAILED {impl}[{speed}] {mode}: {failed[-1]['error']}")
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
    env = {"torch": torch.__version__, "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"}
    for name, mod in (("timm", "timm"), ("transformers", "transformers")):
        try:
            env[name] = __import__(mod).__version__
        except ImportError:
            pass
    return {"model": model, "img_size": img_size, "batch": batch, "config": config.to_dict(),
            "ceiling_tflops": ceiling, "results": [r.to_dict() for r in results], "skipped": skipped, "failed": failed, "env": env}
