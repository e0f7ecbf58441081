"""Model configurations: dataclasses that rebuild a model with no other input.

`ViTConfig` (plain or hybrid ViT) and `ResNetConfig` (BiT ResNet-v2) travel inside every checkpoint
(as JSON, tagged with their `format`) and are what `create_model` overrides act on. `BackboneConfig`
describes a convolutional trunk: the whole of a BiT model, or the front of a hybrid ViT.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

Pool = Literal["cls", "gap"]
PosEmbed = Literal["learn", "sincos", "none"]
Stem = Literal["standard", "small"]
Padding = Literal["symmetric", "same"]

CONFIG_FORMAT = "vitkit.vit/1"
RESNET_FORMAT = "vitkit.resnet/1"


def as_pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """(h, w) from an int or a 2-sequence."""
    if isinstance(value, int):
        return (value, value)
    h, w = value
    return (int(h), int(w))


class SerialisedConfig:
    """The JSON round trip and checked `replace` shared by the model configs (dataclasses)."""

    def replace(self, **overrides: Any):
        """A copy with fields replaced; unknown names are a clear error."""
        check_field_names(overrides, type(self))
        return dataclasses.replace(self, **overrides)  # type: ignore[type-var]

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)  # type: ignore[attr-defined]

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        d = {k: v for k, v in d.items() if k != "format"}
        check_field_names(d, cls)
        return cls(**d)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


def plain_lists(d: dict[str, Any]) -> dict[str, Any]:
    """Tuples of a config dict (img_size, mean, std) as JSON lists."""
    for key in ("img_size", "mean", "std"):
        if d.get(key) is not None:
            d[key] = list(d[key])
    return d


@dataclass
class ViTConfig(SerialisedConfig):
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
    # GELU's form: "erf" (timm, transformers) or "tanh", the approximation the paper's JAX code uses;
    # tanh lets inference fuse GELU into fc1's matmul (speed option fused_gelu, vitkit.layers.linear_gelu)
    gelu: Literal["erf", "tanh"] = "erf"
    # Hybrid (paper section 3.1): a ResNet trunk whose feature map is the token grid (patch_size 1).
    backbone: BackboneConfig | None = None
    name: str = field(default="custom", compare=False)
    # How the model expects its input, so every command preprocesses as training did.
    mean: tuple[float, ...] | None = None  # per-channel, in [0, 1] pixel units; None: 0.5
    std: tuple[float, ...] | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.img_size = as_pair(self.img_size)
        if isinstance(self.backbone, dict):
            self.backbone = BackboneConfig.from_dict(self.backbone)
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
        if self.gelu not in ("erf", "tanh"):
            raise ValueError(f"gelu must be 'erf' or 'tanh', got {self.gelu!r}")

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def num_prefix_tokens(self) -> int:
        """Tokens before the patches: the class token for pool='cls', none for 'gap'."""
        return 1 if self.pool == "cls" else 0

    def token_grid(self, img_size: tuple[int, int] | None = None) -> tuple[int, int]:
        """(rows, cols) of patch tokens at `img_size` (default: the configured size).

        For a hybrid the patches tile the backbone's feature map, not the image.
        """
        from vitkit.layers.patch_embed import grid_size

        hw = as_pair(img_size) if img_size is not None else self.img_size
        if self.backbone is not None:
            hw = self.backbone.feature_size(hw)
        return grid_size(hw, self.patch_size, self.stride)  # type: ignore[arg-type]

    def to_dict(self) -> dict[str, Any]:
        d = plain_lists(dataclasses.asdict(self))
        d["backbone"] = None if self.backbone is None else self.backbone.to_dict()
        d["format"] = CONFIG_FORMAT
        return d


def field_names(cls: type | None = None) -> list[str]:
    """Field names of a config class (ViTConfig by default)."""
    return [f.name for f in dataclasses.fields(cls or ViTConfig)]


def model_field_names() -> set[str]:
    """Every field of every model family: the names `vitkit train --FIELD` passes to the model."""
    return set(field_names(ViTConfig)) | set(field_names(ResNetConfig))


def check_field_names(overrides: dict[str, Any], cls: type | None = None) -> None:
    cls = cls or ViTConfig
    unknown = sorted(set(overrides) - set(field_names(cls)))
    if unknown:
        kind = "ViT" if cls is ViTConfig else "ResNet"
        raise TypeError(f"unknown {kind} config field(s) {unknown}; valid fields: {field_names(cls)}")


# ---- convolutional trunks: BiT ResNet-v2 and the front of a hybrid ViT ---------------------
def round_channels(raw: float) -> int:
    """The nearest multiple of 8 (at least 8, never more than 10% below), as BiT/timm round widths."""
    rounded = max(8, int(raw + 4) // 8 * 8)
    return rounded + 8 if rounded < 0.9 * raw else rounded


def bottleneck_channels(out_channels: int) -> int:
    """Inner width of a bottleneck block: a quarter of its output."""
    return round_channels(out_channels * 0.25)


@dataclass
class BackboneConfig:
    """A ResNet-v2 trunk: a stem and stages of bottleneck blocks with GroupNorm and Weight
    Standardisation (Kolesnikov et al. 2020, BiT). Stage 1 keeps the stem's resolution, every later
    stage halves it. As a hybrid's front end it is the paper's non-pre-activation variant with
    TF 'same' padding; as a BiT classifier (`ResNetConfig`) it is pre-activation.
    """

    layers: tuple[int, ...] = (3, 4, 9)  # blocks per stage; R50: 3,4,6,3; hybrid /16: 3,4,9
    width: int = 1  # BiT's width multiplier (R50x3: 3)
    stem_width: int = 64  # stem channels before the multiplier
    stage_widths: tuple[int, ...] | None = None  # output channels before the multiplier; None: 256 * 2**i
    stem: Stem = "standard"  # "standard": 7x7/2 conv + 3x3/2 max pool; "small": 3x3/1 conv, no pool
    padding: Padding = "same"  # "symmetric" (PyTorch, BiT) or "same" (TensorFlow, the paper's hybrid)
    preact: bool = False  # pre-activation (v2) blocks; False: the post-activation blocks of the hybrid
    num_groups: int = 32  # GroupNorm groups
    ws_eps: float = 1e-8  # weight-standardisation epsilon
    drop_path: float = 0.0  # stochastic depth, rising linearly over the blocks

    def __post_init__(self) -> None:
        self.layers = tuple(int(n) for n in self.layers)
        if self.stage_widths is not None:
            self.stage_widths = tuple(int(w) for w in self.stage_widths)
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        if not self.layers or min(self.layers) < 1:
            raise ValueError(f"layers needs at least one stage of at least one block, got {self.layers}")
        if self.stage_widths is not None and len(self.stage_widths) != len(self.layers):
            raise ValueError(f"stage_widths {self.stage_widths} needs one width per stage of layers {self.layers}")
        if self.width < 1 or self.stem_width < 1:
            raise ValueError(f"width and stem_width must be >= 1, got {self.width}, {self.stem_width}")
        if self.stem not in ("standard", "small"):
            raise ValueError(f"stem must be 'standard' or 'small', got {self.stem!r}")
        if self.padding not in ("symmetric", "same"):
            raise ValueError(f"padding must be 'symmetric' or 'same', got {self.padding!r}")
        if not 0.0 <= self.drop_path < 1.0:
            raise ValueError(f"drop_path must be in [0, 1), got {self.drop_path}")
        for ch in [self.stem_channels, *self.stage_channels, *map(bottleneck_channels, self.stage_channels)]:
            if ch % self.num_groups:
                raise ValueError(f"{ch} channels do not split into {self.num_groups} GroupNorm groups; "
                                 f"choose widths that are multiples of {4 * self.num_groups} or fewer groups")

    @property
    def stem_channels(self) -> int:
        return round_channels(self.stem_width * self.width)

    @property
    def stage_channels(self) -> list[int]:
        bases = self.stage_widths or tuple(256 * 2**i for i in range(len(self.layers)))
        return [round_channels(b * self.width) for b in bases]

    @property
    def out_channels(self) -> int:
        return self.stage_channels[-1]

    @property
    def reduction(self) -> int:
        """Total downsampling of the trunk: 4 for the standard stem, times 2 per stage after the first."""
        return (4 if self.stem == "standard" else 1) * 2 ** (len(self.layers) - 1)

    def feature_size(self, img_size: tuple[int, int]) -> tuple[int, int]:
        """(H, W) of the trunk's output for an image. Every stride-2 step maps n to ceil(n / 2),
        under both padding modes."""
        steps = int(math.log2(self.reduction))
        h, w = img_size
        for _ in range(steps):
            h, w = -(-h // 2), -(-w // 2)
        return (h, w)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["layers"] = list(self.layers)
        d["stage_widths"] = None if self.stage_widths is None else list(self.stage_widths)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneConfig:
        unknown = sorted(set(d) - set(field_names(cls)))
        if unknown:
            raise TypeError(f"unknown backbone field(s) {unknown}; valid fields: {field_names(cls)}")
        return cls(**d)


@dataclass
class ResNetConfig(SerialisedConfig, BackboneConfig):
    """A BiT ResNet-v2 classifier: the trunk (pre-activation, symmetric padding, as BiT), a final
    GroupNorm + ReLU, global average pooling and a linear head. Field names are override names.
    """

    layers: tuple[int, ...] = (3, 4, 6, 3)
    padding: Padding = "symmetric"
    preact: bool = True
    img_size: tuple[int, int] = (224, 224)  # the training resolution; any size runs
    in_chans: int = 3
    num_classes: int = 1000  # 0: no head, `forward` returns the pooled features
    name: str = field(default="custom", compare=False)
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.img_size = as_pair(self.img_size)
        if self.mean is not None:
            self.mean = tuple(float(m) for m in self.mean)
        if self.std is not None:
            self.std = tuple(float(v) for v in self.std)
        super().__post_init__()

    def validate(self) -> None:
        super().validate()
        if self.in_chans < 1:
            raise ValueError(f"in_chans must be >= 1, got {self.in_chans}")
        if self.class_names is not None and self.num_classes and len(self.class_names) != self.num_classes:
            raise ValueError(f"{len(self.class_names)} class_names for {self.num_classes} classes")

    def to_dict(self) -> dict[str, Any]:
        d = plain_lists(super().to_dict())
        d["format"] = RESNET_FORMAT
        return d


ModelConfig = ViTConfig | ResNetConfig
CONFIG_TYPES: dict[str, type] = {CONFIG_FORMAT: ViTConfig, RESNET_FORMAT: ResNetConfig}


def config_from_dict(d: dict[str, Any]) -> ModelConfig:
    """A model config from its dict, by its `format` tag (untagged dicts are ViT configs)."""
    fmt = d.get("format", CONFIG_FORMAT)
    if fmt not in CONFIG_TYPES:
        raise ValueError(f"unknown model config format {fmt!r}; this vitkit reads {sorted(CONFIG_TYPES)}")
    return CONFIG_TYPES[fmt].from_dict(d)


def config_from_json(text: str) -> ModelConfig:
    return config_from_dict(json.loads(text))
