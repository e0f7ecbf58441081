"""Hugging Face `ViTModel` / `ViTForImageClassification` <-> vitkit, both directions.

One table of name pairs serves import and export; the only real surgery is fusing HF's separate
query/key/value projections into vitkit's single qkv projection (and splitting them back).
Files on disk use the classic layout (`encoder.layer.N.attention.attention.query`); transformers 5
renames modules in memory (`layers.N.attention.q_proj`), so imports accept both and exports write
the classic one, which every transformers version reads.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import torch

from vitkit.checkpoints.common import CheckpointError, Imported
from vitkit.config import ViTConfig
from vitkit.layers.pos_embed import square_grid
from vitkit.variants import heads_for_width

# (HF name without the "vit." prefix, vitkit name); "{i}" is the block index.
NAME_PAIRS = [
    ("embeddings.cls_token", "cls_token"),
    ("embeddings.position_embeddings", "pos_embed"),
    ("embeddings.patch_embeddings.projection.{p}", "patch_embed.proj.{p}"),
    ("encoder.layer.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
    ("encoder.layer.{i}.attention.output.dense.{p}", "blocks.{i}.attn.proj.{p}"),
    ("encoder.layer.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
    ("encoder.layer.{i}.intermediate.dense.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("encoder.layer.{i}.output.dense.{p}", "blocks.{i}.mlp.fc2.{p}"),
    ("layernorm.{p}", "norm.{p}"),
    ("pooler.dense.{p}", "pre_logits.fc.{p}"),
    ("classifier.{p}", "head.{p}"),
]
# transformers >= 5 in-memory names, accepted on import only.
V5_NAME_PAIRS = [
    ("layers.{i}.layernorm_before.{p}", "blocks.{i}.norm1.{p}"),
    ("layers.{i}.attention.o_proj.{p}", "blocks.{i}.attn.proj.{p}"),
    ("layers.{i}.layernorm_after.{p}", "blocks.{i}.norm2.{p}"),
    ("layers.{i}.mlp.fc1.{p}", "blocks.{i}.mlp.fc1.{p}"),
    ("layers.{i}.mlp.fc2.{p}", "blocks.{i}.mlp.fc2.{p}"),
]
QKV = re.compile(
    r"^(?:encoder\.layer\.(\d+)\.attention\.attention\.(query|key|value)"
    r"|layers\.(\d+)\.attention\.(q|k|v)_proj)\.(weight|bias)$")
QKV_PART = {"q": "query", "k": "key", "v": "value", "query": "query", "key": "key", "value": "value"}
IGNORED = ("embeddings.mask_token",)  # used only for masked-image-modelling pre-training


def _pattern(template: str) -> re.Pattern[str]:
    regex = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(f"^{regex}$")


_HF_TO_OURS = [(_pattern(hf), ours) for hf, ours in NAME_PAIRS + V5_NAME_PAIRS]
_OURS_TO_HF = [(_pattern(ours), hf) for hf, ours in NAME_PAIRS]


def _rename(name: str, table: list[tuple[re.Pattern[str], str]]) -> str | None:
    for pattern, target in table:
        m = pattern.match(name)
        if m:
            return target.format(**m.groupdict())
    return None


def looks_like_hf(keys: list[str]) -> bool:
    return any(k.removeprefix("vit.").startswith("embeddings.patch_embeddings") for k in keys)


def convert_hf_state(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """HF tensors -> vitkit tensors (q, k, v fused); returns (state, dropped names)."""
    out: dict[str, torch.Tensor] = {}
    qkv: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    dropped: list[str] = []
    for name, tensor in state.items():
        key = name.removeprefix("vit.")
        m = QKV.match(key)
        if m:
            block, part = (m.group(1), m.group(2)) if m.group(1) else (m.group(3), m.group(4))
            qkv.setdefault((block, m.group(5)), {})[QKV_PART[part]] = tensor
            continue
        ours = _rename(key, _HF_TO_OURS)
        if ours is None:
            if key in IGNORED:
                dropped.append(name)
                continue
            out[name] = tensor  # left as is, so the strict load names it as unexpected
        else:
            out[ours] = tensor
    for (block, param), parts in qkv.items():
        missing = {"query", "key", "value"} - set(parts)
        if missing:
            raise CheckpointError(f"block {block} lacks attention {param} for {sorted(missing)}")
        out[f"blocks.{block}.attn.qkv.{param}"] = torch.cat([parts["query"], parts["key"], parts["value"]])
    return out, dropped


# transformers' names of the GELU forms vitkit computes (gelu_new and gelu_pytorch_tanh are both the tanh form)
HF_GELU = {"gelu": "erf", "gelu_pytorch_tanh": "tanh", "gelu_new": "tanh"}


def config_from_hf(hf: dict[str, Any], state: dict[str, torch.Tensor]) -> ViTConfig:
    """vitkit config equivalent to a Hugging Face ViTConfig dict."""
    act = hf.get("hidden_act", "gelu")
    if act not in HF_GELU:
        raise CheckpointError(f"Hugging Face ViT with hidden_act={act!r} is not supported "
                              f"(only {', '.join(repr(a) for a in HF_GELU)})")
    pooler = state.get("pre_logits.fc.weight")
    if pooler is not None and hf.get("pooler_act", "tanh") != "tanh":
        raise CheckpointError(f"pooler_act={hf.get('pooler_act')!r} is not supported (only 'tanh')")
    head = state.get("head.weight")
    num_classes = 0 if head is None else head.shape[0]
    pre = hf.get("preprocessor", {})  # preprocessor_config.json, when read from a folder that has one
    chans = hf.get("num_channels", 3)
    mean, std = pre.get("image_mean"), pre.get("image_std")
    if not (isinstance(mean, list) and isinstance(std, list) and len(mean) == len(std) == chans):
        mean = std = None
    return ViTConfig(
        mean=mean, std=std, class_names=class_names_from_hf(hf, num_classes),
        img_size=hf.get("image_size", 224),
        patch_size=hf.get("patch_size", 16),
        in_chans=chans,
        num_classes=num_classes,
        embed_dim=hf["hidden_size"],
        depth=hf["num_hidden_layers"],
        num_heads=hf["num_attention_heads"],
        mlp_dim=hf["intermediate_size"],
        representation_size=None if pooler is None else pooler.shape[0],
        dropout=hf.get("hidden_dropout_prob", 0.0),
        attn_dropout=hf.get("attention_probs_dropout_prob", 0.0),
        norm_eps=hf.get("layer_norm_eps", 1e-12),
        qkv_bias=hf.get("qkv_bias", True),
        gelu=HF_GELU[act],
        name="hf-vit",
    )


def class_names_from_hf(hf: dict[str, Any], num_classes: int) -> list[str] | None:
    """id2label as a list, unless it is missing, incomplete or transformers' LABEL_i placeholders."""
    labels = hf.get("id2label") or {}
    names = [labels.get(str(i), labels.get(i)) for i in range(num_classes)]
    if not num_classes or len(labels) != num_classes or any(n is None for n in names):
        return None
    if names == [f"LABEL_{i}" for i in range(num_classes)]:
        return None
    return [str(n) for n in names]


def config_from_hf_state(state: dict[str, torch.Tensor], num_heads: int | None = None) -> dict[str, Any]:
    """An HF-style config dict inferred from tensor shapes, for a bare state dict."""
    proj = state["patch_embed.proj.weight"]  # (D, C, p, p)
    width, chans, patch = proj.shape[0], proj.shape[1], proj.shape[2]
    gh, gw = square_grid(state["pos_embed"].shape[1] - 1)
    depth = len({k.split(".")[1] for k in state if k.startswith("blocks.")})
    heads = num_heads or heads_for_width(width)
    if heads is None:
        raise CheckpointError(f"cannot infer num_heads for width {width}; pass num_heads=... to load_model")
    return dict(hidden_size=width, num_hidden_layers=depth, num_attention_heads=heads,
                intermediate_size=state["blocks.0.mlp.fc1.weight"].shape[0], image_size=gh * patch,
                patch_size=patch, num_channels=chans, qkv_bias="blocks.0.attn.qkv.bias" in state)


def import_hf(state: dict[str, torch.Tensor], hf_config: dict[str, Any] | None,
              num_heads: int | None = None) -> Imported:
    ours, dropped = convert_hf_state(state)
    if hf_config is None:
        hf_config = config_from_hf_state(ours, num_heads)
    return Imported(config_from_hf(hf_config, ours), ours, "hf", dropped)


def read_hf_dir(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Tensors and config.json of a `save_pretrained` directory."""
    from vitkit.checkpoints.common import read_safetensors, read_torch

    config = json.loads((path / "config.json").read_text())
    if config.get("model_type") not in ("vit", "bit"):
        raise CheckpointError(f"{path}: Hugging Face model_type {config.get('model_type')!r} is not "
                              "'vit' (ViTForImageClassification) or 'bit' (BitForImageClassification)")
    if (path / "model.safetensors").is_file():
        state, _ = read_safetensors(path / "model.safetensors")
    elif (path / "pytorch_model.bin").is_file():
        state = read_torch(path / "pytorch_model.bin")
    else:
        raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in this folder")
    pre = path / "preprocessor_config.json"
    if pre.is_file():  # how the model expects its input (mean, std), when the folder says
        try:
            config["preprocessor"] = json.loads(pre.read_text())
        except json.JSONDecodeError:
            pass  # optional metadata: a broken file only loses the normalisation
    return state, config


def is_hf_dir(path: Path) -> bool:
    if not (path / "config.json").is_file():
        return False
    try:
        return "model_type" in json.loads((path / "config.json").read_text())
    except (json.JSONDecodeError, OSError):
        return False


# ---- export -------------------------------------------------------------------------------
def to_hf_state(state: dict[str, torch.Tensor], with_head: bool = True) -> dict[str, torch.Tensor]:
    """vitkit tensors -> `ViTForImageClassification` tensors (qkv split back into three)."""
    out: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        m = re.match(r"^blocks\.(\d+)\.attn\.qkv\.(weight|bias)$", name)
        if m:
            for part, chunk in zip(("query", "key", "value"), tensor.chunk(3)):
                out[f"vit.encoder.layer.{m.group(1)}.attention.attention.{part}.{m.group(2)}"] = chunk.clone()
            continue
        hf = _rename(name, _OURS_TO_HF)
        if hf is None:
            raise CheckpointError(f"tensor {name} has no Hugging Face ViT equivalent")
        if hf.startswith("classifier."):
            if with_head:
                out[hf] = tensor
        else:
            out["vit." + hf] = tensor
    return out


def save_hf_dir(model: torch.nn.Module, path: str | Path) -> Path:
    """Write a folder that `transformers.ViTForImageClassification.from_pretrained` loads."""
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    config = to_hf_config(model.config)  # type: ignore[arg-type]
    state = {k: v.detach().contiguous().cpu() for k, v in to_hf_state(model.state_dict()).items()}
    save_file(state, str(path / "model.safetensors"), metadata={"format": "pt"})
    (path / "config.json").write_text(json.dumps(config, indent=2))
    (path / "preprocessor_config.json").write_text(json.dumps(to_hf_preprocessor(model.config), indent=2))
    return path


def to_hf_preprocessor(config: ViTConfig) -> dict[str, Any]:
    """A `ViTImageProcessor` config that feeds the model as vitkit does: resize to img_size
    (bilinear), pixels to [0, 1], the model's own mean/std (0.5 when it records none)."""
    c = config.in_chans
    return {
        "image_processor_type": "ViTImageProcessor", "do_resize": True, "resample": 2,
        "size": {"height": config.img_size[0], "width": config.img_size[1]},
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": list(config.mean or (0.5,) * c), "image_std": list(config.std or (0.5,) * c),
    }


def to_hf_config(config: ViTConfig) -> dict[str, Any]:
    """A Hugging Face ViTConfig dict computing what the vitkit model computes, or an error."""
    unsupported = []
    if config.stride != config.patch_size:
        unsupported.append("overlapping patches (stride != patch_size)")
    if config.pool != "cls":
        unsupported.append("pool='gap'")
    if config.pos_embed != "learn":
        unsupported.append(f"pos_embed={config.pos_embed!r}")
    if config.img_size[0] != config.img_size[1]:
        unsupported.append("non-square images")
    if config.representation_size:
        unsupported.append("a pre-logits layer in a classifier")
    if config.backbone is not None:
        unsupported.append("a hybrid's ResNet backbone (transformers 5 has no ViT hybrid)")
    if unsupported:
        raise CheckpointError("Hugging Face ViT cannot express: " + ", ".join(unsupported))
    names = list(config.class_names or [])
    if len(names) != config.num_classes or len(set(names)) != len(names):  # label2id needs unique names
        names = [f"LABEL_{i}" for i in range(config.num_classes)]
    return {
        "model_type": "vit", "architectures": ["ViTForImageClassification"],
        "hidden_size": config.embed_dim, "num_hidden_layers": config.depth,
        "num_attention_heads": config.num_heads, "intermediate_size": config.mlp_dim,
        "hidden_act": "gelu" if config.gelu == "erf" else "gelu_pytorch_tanh",
        "hidden_dropout_prob": config.dropout,
        "attention_probs_dropout_prob": config.attn_dropout, "layer_norm_eps": config.norm_eps,
        "image_size": config.img_size[0], "patch_size": config.patch_size,
        "num_channels": config.in_chans, "qkv_bias": config.qkv_bias,
        "num_labels": config.num_classes,
        "id2label": {str(i): name for i, name in enumerate(names)},
        "label2id": {name: i for i, name in enumerate(names)},
    }
