"""The model configuration: one dataclass that rebuilds a ViT with no other input.

It travels inside every checkpoint (as JSON) and is what `create_model` overrides act on.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Pool = Literal["cls", "gap"]
PosEmbed = Literal["learn", "sincos", "none"]

CONFIG_FORMAT = "vitkit.vit/1"


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(h, w) from an int or a 2-sequence."""
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


@dataclass
class ViTConfig:
    """Everything that defines a Vision Transformer's architecture.

    Field names are the override names of `vitkit.create_model(name, **overrides)`.
    """

    img_size: tuple[int, int] = (224, 224)  # (H, W); an int means square
    patch_size: int = 16
    stride: int | None = None  # None: stride = patch_size (non-overlapping patches)
    in_chans: int = 3
    num_classes: int = 1000  # 0: no head, `forward` returns the pooled representation
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_dim: int = 3072
    pool: Pool = "cls"
    pos_embed: PosEmbed = "learn"
    representation_size: int | None = None  # the paper's pre-training head (Linear + tanh)
    dropout: float = 0.0
    attn_dropout: float = 0.0
    drop_path: float = 0.0
    norm_eps: float = 1e-6  # paper/timm 1e-6, Hugging Face 1e-12
    qkv_bias: bool = True
    dynamic_img_size: bool = False
    pos_interp: Literal["bicubic", "bilinear"] = "bicubic"
    name: str = field(default="custom", compare=False)
    # How the model expects its input, so every command preprocesses as training did.
    mean: tuple[float, ...] | None = None  # per-channel, in [0, 1] pixel units; None: 0.5
    std: tuple[float, ...] | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.img_size = as_pair(self.img_size)
        if self.mean is not None:
            self.mean = tuple(float(m) for m in self.mean)
        if self.std is not None:
            self.std = tuple(float(v) for v in self.std)
        if self.stride is None:
            self.stride = self.patch_size
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        if self.pool not in ("cls", "gap"):
            raise ValueError(f"pool must be 'cls' or 'gap', got {self.pool!r}")
        if self.pos_embed not in ("learn", "sincos", "none"):
            raise ValueError(f"pos_embed must be 'learn', 'sincos' or 'none', got {self.pos_embed!r}")
        if self.in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {self.in_chans}")
        if self.patch_size < 1 or self.stride < 1:  # type: ignore[operator]
            raise ValueError(f"patch_size and stride must be >= 1, got {self.patch_size}, {self.stride}")
        if self.embed_dim % self.num_heads:
            raise ValueError(
                f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}; "
                f"choose num_heads among {[h for h in range(1, 33) if self.embed_dim % h == 0]}"
            )
        if self.pos_embed == "sincos" and self.embed_dim % 4:
            raise ValueError(f"2D sin-cos position embeddings need embed_dim divisible by 4, got {self.embed_dim}")
        for name in ("dropout", "attn_dropout", "drop_path"):
            p = getattr(self, name)
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        if self.class_names is not None and self.num_classes and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for {self.num_classes} classes")
        if self.pos_interp not in ("bicubic", "bilinear"):
            raise ValueError(f"pos_interp must be 'bicubic' or 'bilinear', got {self.pos_interp!r}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: the class token for pool='cls', none for 'gap'."""
        return 1 if self.pool == "cls" else 0

    def replace(self, **overrides: Any) -> ViTConfig:
        """A copy with fields replaced; unknown names are a clear error."""
        check_field_names(overrides)
        return dataclasses.replace(self, **overrides)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["img_size"] = list(self.img_size)
        for key in ("mean", "std"):
            d[key] = None if d[key] is None else list(d[key])
        d["format"] = CONFIG_FORMAT
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ViTConfig:
        d = {k: v for k, v in d.items() if k != "format"}
        check_field_names(d)
        return cls(**d)

    @classmethod
    def from_json(cls, text: str) -> ViTConfig:
        return cls.from_dict(json.loads(text))


def field_names() -> list[str]:
    return [f.name for f in dataclasses.fields(ViTConfig)]


def check_field_names(overrides: dict[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(field_names()))
    if unknown:
        raise TypeError(f"unknown ViT config field(s) {unknown}; valid fields: {field_names()}")
