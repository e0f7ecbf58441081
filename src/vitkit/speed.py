"""Speed switches that do not change the function a model computes beyond bf16 rounding.

`configure(model, ...)` sets them on a built model; each was measured side by side with timm
(docs/benchmarks.md says what each bought). All default to off, so a model built by
`create_model` computes exactly what timm and transformers compute. Two change it by more than
float rounding, each with its own check: `fused_gelu` switches the model to the tanh form of GELU
(the paper's JAX code's, within 4.7e-4 of the erf form; recorded as `config.gelu`, so a checkpoint
evaluates with the function it was trained with), and `fp8` rounds matmul inputs to 8 bits.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch.nn.attention import SDPBackend

from vitkit.layers import tile_attention
from vitkit.layers.attention import Attention
from vitkit.layers.block import Block, Mlp

BACKENDS = {
    "flash": [SDPBackend.FLASH_ATTENTION],
    "cudnn": [SDPBackend.CUDNN_ATTENTION],
    "efficient": [SDPBackend.EFFICIENT_ATTENTION],
    "math": [SDPBackend.MATH],
}


SWITCHES = ("bf16_residual", "patch_matmul", "fused_gelu", "mlp_epilogues", "bias_grad", "fold_norm", "qkv_bias_sums",
            "residual_epilogue", "dgelu_bias_sum", "fp8", "pdl", "last_block_cls")


@dataclass
class SpeedOptions:
    attention: str = "auto"  # auto | flash | cudnn | efficient | math: the SDPA kernel to pin;
    # tile: vitkit's one-tile Triton kernel (vitkit.layers.tile_attention) for <= 256 tokens
    bf16_residual: bool = False  # keep the residual stream in bf16 (halves element-wise traffic)
    patch_matmul: bool = False  # non-overlapping patch projection as reshape + one matmul
    fused_gelu: bool = False  # GELU's tanh form (the paper's code's; config.gelu), fused into fc1 for inference
    mlp_epilogues: bool = False  # training: the MLP's GELU and its gradient inside fc1/fc2's matmuls (cuBLASLt)
    bias_grad: bool = False  # training: encoder linears' bias gradients as cuBLAS GEMVs (ones @ grad)
    fold_norm: bool = False  # training: LayerNorm affines folded into qkv/fc1 (no token sums in backward)
    qkv_bias_sums: bool = False  # training with tile: qkv's bias gradient from dq's and dO's sums (k's is 0)
    residual_epilogue: bool = False  # training: the residual adds inside proj's and fc2's matmuls (cuBLASLt)
    # training: GELU's gradient and fc1's bias gradient in one Triton matmul (on Hopper, or its Gluon
    # ping-pong form, whichever the op times faster)
    dgelu_bias_sum: bool = False
    fp8: bool = False  # encoder linears as FP8 matmuls with dynamic scaling (torchao; Hopper or newer)
    pdl: bool = False  # compiled: Inductor's kernels launched with programmatic dependent launch (Hopper or newer)
    # pool="cls": the last block computes the class token's output only, the one row its head reads
    # (same logits and gradients; the other tokens still give keys and values)
    last_block_cls: bool = False

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def parse(cls, text: str) -> SpeedOptions:
        """'cudnn,bf16_residual,patch_matmul' -> options (names of backends or boolean switches)."""
        opts = cls()
        for item in filter(None, (t.strip() for t in text.split(","))):
            if item in BACKENDS or item in ("auto", "tile"):
                opts.attention = item
            elif item in SWITCHES:
                setattr(opts, item, True)
            else:
                raise ValueError(f"unknown speed option {item!r}; use {sorted(BACKENDS) + ['tile']}, "
                                 f"{', '.join(SWITCHES)}")
        return opts


def configure(model: torch.nn.Module, options: SpeedOptions) -> torch.nn.Module:
    """Apply speed options in place; returns the model."""
    if options.attention not in ("auto", "tile") and options.attention not in BACKENDS:
        raise ValueError(f"unknown attention backend {options.attention!r}")
    backends = BACKENDS.get(options.attention)
    if not hasattr(model, "patch_embed"):  # a ResNet: no attention, no token stream
        if any(getattr(options, switch) for switch in SWITCHES) or options.attention != "auto":
            raise ValueError(f"speed options {options.to_dict()} apply to ViTs only, not to {type(model).__name__}")
        return model
    if options.mlp_epilogues and not options.fused_gelu:
        raise ValueError("speed option mlp_epilogues fuses the tanh GELU that fused_gelu selects: add fused_gelu")
    if options.dgelu_bias_sum and not options.mlp_epilogues:
        raise ValueError("speed option dgelu_bias_sum replaces the DGELU matmul of mlp_epilogues: add mlp_epilogues")
    if options.fp8 and (options.fused_gelu or options.bias_grad or options.qkv_bias_sums):
        raise ValueError("speed option fp8 replaces the linear layers that fused_gelu, bias_grad and "
                         "qkv_bias_sums change: use fp8 without them")
    if options.qkv_bias_sums and options.attention != "tile":
        raise ValueError("speed option qkv_bias_sums makes qkv's projection and the tile attention kernel "
                         "one autograd node: add tile")
    if options.fp8 and options.fold_norm:
        raise ValueError("speed option fold_norm feeds qkv and fc1 folded weights, bypassing the "
                         "Float8Linear layers that fp8 puts there: use fp8 without fold_norm")
    if options.residual_epilogue and (options.fp8 or not options.bf16_residual):
        raise ValueError("speed option residual_epilogue adds into the bf16 residual stream inside bf16 "
                         "matmuls: add bf16_residual, and use it without fp8")
    if options.last_block_cls and model.config.pool != "cls":
        raise ValueError("speed option last_block_cls runs the last block for the class token, which only "
                         f"a pool='cls' model's head reads; this model pools {model.config.pool!r}")
    if options.attention == "tile":
        check_tile_attention(model)
    for module in model.modules():
        if isinstance(module, Attention):
            module.sdpa_backends = backends
            module.tile_kernel = options.attention == "tile"
            module.column_sum_bias_grad = options.bias_grad
            module.qkv_bias_sums = options.qkv_bias_sums
        elif isinstance(module, Mlp):
            module.epilogues = options.mlp_epilogues
            module.column_sum_bias_grad = options.bias_grad
            module.dgelu_bias_sum = options.dgelu_bias_sum
            if options.fused_gelu:
                module.use_tanh_gelu()
        elif isinstance(module, Block):
            module.fold_norm = options.fold_norm
            module.residual_epilogue = options.residual_epilogue
    if options.fused_gelu:  # part of the function: checkpoints record it, so evaluation computes the same
        model.config = model.config.replace(gelu="tanh")  # a copy: the config may be shared with other models
    model.residual_dtype = torch.bfloat16 if options.bf16_residual else None
    model.last_block_cls = options.last_block_cls
    model.patch_embed.as_matmul = options.patch_matmul
    # settings for this model's compilation only (`compile_model`): each kernel Inductor generates may
    # start while the one before it finishes, waiting in-kernel for its inputs, which shortens the
    # ~1 us gap between kernels that dominates small models' steps (docs/benchmarks.md section 17)
    model.inductor_options = {"triton.enable_pdl": True} if options.pdl else {}
    if options.fp8:
        to_fp8(model)
    return model


def compile_model(model: torch.nn.Module, mode: str | None = None) -> torch.nn.Module:
    """torch.compile(model, mode=mode, dynamic=False), plus the Inductor settings that `configure` chose.

    The settings go to this compilation only (torch.compile's `options`, with `mode`'s own settings
    spelled out, since torch.compile takes one or the other), so a peer compiled in the same process
    keeps Inductor's defaults. Static shapes: see vitkit.bench for why never dynamic.
    """
    options = getattr(model, "inductor_options", None)
    if not options:
        return torch.compile(model, mode=mode, dynamic=False)
    from torch._inductor import list_mode_options

    return torch.compile(model, options={**list_mode_options(mode or "default"), **options}, dynamic=False)


def check_tile_attention(model: torch.nn.Module) -> None:
    """The one-tile kernel needs Triton and a short sequence; say so before training, not at step 1.

    On a machine without CUDA the model still runs (SDPA is used there), so a run trained with the
    kernel can be evaluated on a CPU.
    """
    if torch.cuda.is_available() and not tile_attention.available():
        raise ImportError("speed option 'tile' needs Triton (pip install triton)")
    n_tokens = model.config.num_prefix_tokens + model.grid[0] * model.grid[1]
    for module in model.modules():
        if isinstance(module, Attention) and not tile_attention.shape_fits(n_tokens, module.head_dim):
            raise ValueError(f"speed option 'tile' handles <= {tile_attention.MAX_TOKENS} tokens and head "
                             f"dimensions {tile_attention.HEAD_DIMS}; this model has {n_tokens} tokens and "
                             f"head dimension {module.head_dim}: use an SDPA backend (auto, cudnn, flash)")


def to_fp8(model: torch.nn.Module) -> torch.nn.Module:
    """Swap the encoder blocks' linear layers for torchao's Float8Linear (tensor-wise dynamic scaling).

    Not the numerics-preserving kind of switch: FP8 (e4m3) rounds much more coarsely than bf16, so it
    has its own accuracy check (docs/benchmarks.md). The patch projection and the head stay in bf16:
    they are a small share of the FLOPs and the most sensitive to rounding. Call before building the
    optimiser (parameters are kept, modules replaced) and before torch.compile.
    """
    try:
        from torchao.float8 import convert_to_float8_training
    except ImportError as e:
        raise ImportError("speed option fp8 needs torchao (pip install torchao); it runs on GPUs with "
                          "FP8 tensor cores (compute capability 8.9 or newer)") from e

    def in_blocks(module: torch.nn.Module, fqn: str) -> bool:
        if not isinstance(module, torch.nn.Linear):
            return True  # let the converter descend
        # FP8 matmuls need both dimensions divisible by 16
        return fqn.startswith("blocks.") and module.in_features % 16 == 0 and module.out_features % 16 == 0

    convert_to_float8_training(model, module_filter_fn=in_blocks)
    return model
