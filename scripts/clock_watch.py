"""Do the GPU's clocks hold through a long run of training steps, for vitkit and for timm?

    PYTHONPATH=src python scripts/clock_watch.py [--speed S] [--seconds 8] [--rounds 2] [--model vit_s4 ...]

`vitkit bench` times 55 steps (under half a second at the CIFAR scale) right after compiling. If the
card lowers its clocks under sustained load (power cap, heat), a short window and a long one can rank
two implementations differently. This script builds vitkit and timm as the bench does, then runs each
for `--seconds` at a time, alternating, `--rounds` times, while `nvidia-smi` samples the SM clock,
power and the active clock-event reasons every 100 ms. It prints one JSON line per window: img/s per
second of the window and the samples' medians.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import threading
import time

import torch

from vitkit.bench import build_step, cuda_block_ms, time_steps
from vitkit.variants import model_config

QUERY = "clocks.sm,clocks.mem,power.draw,temperature.gpu,clocks_event_reasons.active"


class Sampler:
    """nvidia-smi in loop mode; each line is stamped with the host's clock when it arrives."""

    def __init__(self, interval_ms: int = 100):
        self.samples: list[tuple[float, list[str]]] = []
        query = QUERY
        probe = subprocess.run(["nvidia-smi", f"--query-gpu={query}", "--format=csv"], check=False, capture_output=True)
        if probe.returncode:
            query = query.replace("clocks_event_reasons", "clocks_throttle_reasons")  # older drivers' name
        self.proc = subprocess.Popen(["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader,nounits",
                                      f"-lms={interval_ms}"], stdout=subprocess.PIPE, text=True)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.samples.append((time.time(), [f.strip() for f in line.split(",")]))

    def between(self, t0: float, t1: float) -> dict:
        rows = [s for t, s in self.samples if t0 <= t <= t1]
        if not rows:
            return {}

        def med(i: int) -> float | None:
            vals = [float(r[i]) for r in rows if r[i].replace(".", "", 1).isdigit()]
            return statistics.median(vals) if vals else None
        reasons = sorted({r[4] for r in rows})
        return {"n": len(rows), "sm_mhz": med(0), "sm_mhz_min": min(float(r[0]) for r in rows),
                "mem_mhz": med(1), "power_w": med(2), "temp_c": med(3), "reasons": reasons}

    def stop(self) -> None:
        self.proc.terminate()


def sustained(step, seconds: float, block: int) -> tuple[list[float], float, float]:
    """Run `step` for about `seconds`; ms per step of each block of `block` steps."""
    times, t0 = [], time.time()
    while time.time() - t0 < seconds:
        times.append(cuda_block_ms(step, block))
    return times, t0, time.time()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="vit_s4")
    p.add_argument("--img-size", type=int, default=32)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--depth", type=int, default=7)
    p.add_argument("--num-classes", type=int, default=10)
    p.add_argument("--speed", default="bf16_residual,patch_matmul,fused_gelu,mlp_epilogues,tile,fold_norm,"
                                      "qkv_bias_sums,residual_epilogue,dgelu_bias_sum,pdl")
    p.add_argument("--compile-mode", default="reduce-overhead")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--block", type=int, default=20)
    args = p.parse_args()
    device = torch.device("cuda")
    overrides = {"depth": args.depth, "num_classes": args.num_classes} if args.model == "vit_s4" else {}
    config = model_config(args.model, img_size=args.img_size, **overrides)
    steps = {}
    for impl in ("vitkit", "timm"):
        steps[impl] = build_step(impl, config, "train", args.batch, device, args.speed, compile_mode=args.compile_mode)
        # the bench's own short window, fresh after compiling, as `vitkit bench` measures it
        ms = time_steps(steps[impl], device, warmup=5, iters=10, repeats=5)
        print(json.dumps({"impl": impl, "window": "bench (55 steps)", "img_s": round(args.batch / ms * 1e3)}), flush=True)
    sampler = Sampler()
    time.sleep(1.0)
    idle = sampler.between(time.time() - 1.0, time.time())
    print(json.dumps({"window": "idle 1 s", **idle}), flush=True)
    for r in range(args.rounds):
        for impl in ("vitkit", "timm") if r % 2 == 0 else ("timm", "vitkit"):
            times, t0, t1 = sustained(steps[impl], args.seconds, args.block)
            # img/s per second of the window: does it fall as the card warms?
            per_sec, acc, n, t = [], 0.0, 0, 0.0
            for ms in times:
                acc, n, t = acc + ms, n + 1, t + ms * args.block
                if t >= 1000.0:
                    per_sec.append(round(args.batch / (acc / n) * 1e3))
                    acc, n, t = 0.0, 0, 0.0
            print(json.dumps({"impl": impl, "round": r, "window_s": round(t1 - t0, 1),
                              "img_s_median": round(args.batch / statistics.median(times) * 1e3),
                              "img_s_first_block": round(args.batch / times[0] * 1e3),
                              "img_s_per_second": per_sec, **sampler.between(t0, t1)}), flush=True)
            time.sleep(2.0)  # let the card cool a little between windows, the same for both
    sampler.stop()


if __name__ == "__main__":
    main()
