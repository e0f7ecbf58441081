"""BiT ResNet-v2: parity with transformers' BiT, exact parameter counts, weight standardisation,
the small stem, checkpoints and training through the same engine as the ViTs."""

import json

import pytest
import torch
from safetensors.torch import save_file

import vitkit
from conftest import randomize
from vitkit.config import ResNetConfig
from vitkit.layers.std_conv import StdConv2d, same_padding
from vitkit.resnet import ResNetV2
from vitkit.variants import list_models, model_config

transformers = pytest.importorskip("transformers")

# 224x224, 1000 classes. Each equals transformers' BitForImageClassification built with the same
# stem width, stage widths and depths (`test_bit_r50x1_matches_transformers_count` rebuilds one);
# timm's published sizes agree (R50x1 25.55M, R50x3 217.32M, R101x1 44.54M, R152x2 236.34M).
BIT_PARAMS = {
    "bit_r26x1": 15_987_496, "bit_r26x2": 59_785_832, "bit_r26x3": 131_396_008, "bit_r26x4": 230_818_024,
    "bit_r50x1": 25_549_352, "bit_r50x2": 97_988_712, "bit_r50x3": 217_319_080, "bit_r50x4": 383_540_456,
    "bit_r101x1": 44_541_480, "bit_r101x2": 173_852_776, "bit_r101x3": 387_934_888, "bit_r101x4": 686_787_816,
    "bit_r152x1": 60_185_128, "bit_r152x2": 236_335_208, "bit_r152x3": 528_451_240, "bit_r152x4": 936_533_224,
}

# Tiny shapes that still exercise everything: several stages, a multi-block stage, few groups.
HF_TINY = dict(embedding_size=16, hidden_sizes=[32, 64, 128], depths=[1, 2, 1], num_groups=4)
TINY = dict(layers=(1, 2, 1), stem_width=16, stage_widths=(32, 64, 128), num_groups=4)


def hf_bit(num_labels: int = 5, **shape) -> torch.nn.Module:
    config = transformers.BitConfig(num_labels=num_labels, **{**HF_TINY, **shape})
    cls = transformers.BitForImageClassification if num_labels else transformers.BitModel
    return randomize(cls(config)).eval()


def meta_params(name: str) -> int:
    with torch.device("meta"):
        return vitkit.create_model(name).num_params()


@pytest.mark.parametrize("name", list_models("bit"))
def test_every_bit_model_has_its_exact_parameter_count(name):
    assert name in BIT_PARAMS, f"{name} is in the zoo but not in the table of exact counts"
    assert meta_params(name) == BIT_PARAMS[name]


def test_bit_r50x1_matches_transformers_count():
    hf = transformers.BitForImageClassification(transformers.BitConfig(num_labels=1000))
    assert sum(p.numel() for p in hf.parameters()) == vitkit.create_model("bit_r50x1").num_params() == 25_549_352


CASES = {
    "bit": dict(),  # BiT proper: pre-activation, PyTorch padding
    "hybrid-trunk": dict(layer_type="bottleneck", global_padding="SAME", embedding_dynamic_padding=True),
}


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("size", [(32, 32), (37, 29)], ids=["32", "odd-37x29"])
def test_transformers_bit_import_gives_the_same_logits(tmp_path, case, size):
    hf = hf_bit(**CASES[case])
    hf.save_pretrained(tmp_path / "hf")
    ours = vitkit.load_model(tmp_path / "hf").eval()
    assert isinstance(ours, ResNetV2) and ours.config.preact == (case == "bit")
    assert ours.num_params() == sum(p.numel() for p in hf.parameters())
    x = torch.randn(2, 3, *size)
    with torch.no_grad():
        expected, got = hf(pixel_values=x).logits, ours(x)
    assert (expected[0] - expected[1]).abs().max() > 1e-2  # the logits tell the images apart: a real check
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5), (got - expected).abs().max()


def test_transformers_bit_model_without_head_gives_the_pooled_features(tmp_path):
    hf = hf_bit(num_labels=0)
    path = tmp_path / "bit.safetensors"  # a bare state dict: the architecture comes from the shapes
    save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    with pytest.raises(vitkit.CheckpointError, match="pass num_groups"):
        vitkit.load_model(path)  # GroupNorm groups are not in the weights
    ours = vitkit.load_model(path, num_groups=4).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        out = hf(pixel_values=x)
        assert torch.allclose(ours(x), out.pooler_output.flatten(1), atol=1e-5, rtol=1e-5)
        assert torch.allclose(ours.forward_features(x), out.last_hidden_state, atol=1e-5, rtol=1e-5)


def test_unsupported_transformers_padding_is_refused(tmp_path):
    hf = hf_bit(global_padding="SAME")  # pre-activation with TF padding: not a layout vitkit runs
    hf.save_pretrained(tmp_path / "hf")
    with pytest.raises(vitkit.CheckpointError, match="global_padding='SAME'.*not supported"):
        vitkit.load_model(tmp_path / "hf")


def test_weight_standardisation_normalises_each_filter():
    conv = StdConv2d(4, 6, 3, eps=0.0)
    with torch.no_grad():
        conv.weight.mul_(7).add_(3)
    w = conv.standardized_weight().double()
    assert torch.allclose(w.mean(dim=(1, 2, 3)), torch.zeros(6, dtype=torch.float64), atol=1e-6)
    assert torch.allclose(w.var(dim=(1, 2, 3), correction=0), torch.ones(6, dtype=torch.float64), atol=1e-5)
    x = torch.randn(2, 4, 9, 9)
    assert torch.allclose(conv(x), torch.nn.functional.conv2d(x, w.float(), padding=1), atol=1e-5)


def test_same_padding_matches_tensorflow():
    # TF 'SAME': output ceil(n / s); an odd total pixel of padding goes after.
    assert same_padding(224, 7, 2) == (2, 3) and same_padding(225, 7, 2) == (3, 3)
    assert same_padding(112, 3, 2) == (0, 1) and same_padding(8, 1, 2) == (0, 0)
    conv = StdConv2d(3, 8, 3, stride=2, padding="same")
    assert conv(torch.randn(1, 3, 15, 16)).shape[-2:] == (8, 8)


def test_small_images_get_the_stem_without_early_downsampling():
    small = model_config("bit_r26x1", img_size=32)
    assert small.stem == "small" and small.feature_size((32, 32)) == (4, 4)
    assert model_config("bit_r26x1").stem == "standard" and model_config("bit_r26x1").feature_size((224, 224)) == (7, 7)
    assert model_config("bit_r26x1", img_size=32, stem="standard").stem == "standard"
    model = vitkit.create_model("bit_r26", img_size=32, num_classes=10, in_chans=1, **TINY)
    assert model.config.name == "bit_r26x1"
    assert model.forward_features(torch.randn(2, 1, 32, 32)).shape == (2, 128, 8, 8)  # 3 stages: 32, 16, 8
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)


def test_names_overrides_and_errors():
    assert model_config("BiT-M-R50x3").name == "bit_r50x3" and model_config("bit_r50").width == 1
    assert model_config("bit_r101x1").layers == (3, 4, 23, 3)
    with pytest.raises(ValueError, match="unknown model 'bit_r34x1'"):
        model_config("bit_r34x1")
    with pytest.raises(TypeError, match="unknown ResNet config field.*embed_dim"):
        model_config("bit_r50x1", embed_dim=32)
    with pytest.raises(ValueError, match="GroupNorm groups"):
        model_config("bit_r50x1", stage_widths=(40, 512, 1024, 2048))


def test_own_format_round_trip_and_new_head(tmp_path):
    model = randomize(vitkit.create_model("bit_r50x1", img_size=32, num_classes=7, **TINY)).eval()
    model.save(tmp_path / "m")
    assert json.loads((tmp_path / "m" / "config.json").read_text())["format"] == "vitkit.resnet/1"
    loaded = vitkit.load_model(tmp_path / "m").eval()
    assert isinstance(loaded, ResNetV2) and loaded.config == model.config
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    relabelled = vitkit.load_model(tmp_path / "m", num_classes=3, img_size=64)
    assert relabelled.config.img_size == (64, 64) and torch.count_nonzero(relabelled.head.weight) == 0
    with torch.no_grad():  # same trunk, new zero head
        assert torch.equal(relabelled.forward_features(x), model.forward_features(x))
    with pytest.raises(vitkit.CheckpointError, match="cannot override.*layers"):
        vitkit.load_model(tmp_path / "m", layers=(2, 2, 2))


def test_timm_layout_imports(tmp_path):
    # timm's BiT names are vitkit's, but its head is a 1x1 convolution
    model = randomize(vitkit.create_model("bit_r50x2", num_classes=4, **TINY)).eval()
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("head.")}
    state["head.fc.weight"] = model.head.weight[:, :, None, None].clone()
    state["head.fc.bias"] = model.head.bias.clone()
    torch.save(state, tmp_path / "resnetv2_50x2_bit.pth")
    loaded = vitkit.load_model(tmp_path / "resnetv2_50x2_bit.pth", num_groups=4).eval()
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert loaded.config.stage_channels == model.config.stage_channels


def test_gradient_checkpointing_gives_the_same_gradients():
    model = randomize(vitkit.create_model("bit_r26x1", img_size=16, num_classes=3, **TINY))
    x = torch.randn(2, 3, 16, 16)
    grads = []
    for flag in (False, True):
        model.zero_grad()
        model.grad_checkpointing = flag
        model(x).square().sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(*grads))


def test_bit_model_trains_through_the_engine(tmp_path):
    from vitkit.train import TrainConfig, train

    config = TrainConfig().with_overrides(dict(
        model="bit_r26x1", data="digits", img_size=8, steps=6, batch_size=32, lr=3e-3, progress=False,
        model_overrides=dict(TINY, drop_path=0.1), grad_checkpointing=True, out=str(tmp_path / "run")))
    summary = train(config)
    model = vitkit.load_model(summary["run_dir"])
    assert isinstance(model, ResNetV2) and model.config.stem == "small" and model.config.in_chans == 1
    assert model.config.class_names == [str(d) for d in range(10)] and summary["params"] == model.num_params()
    assert torch.count_nonzero(model.head.weight) > 0  # the zero head was trained
    assert isinstance(vitkit.model_config("bit_r26x1"), ResNetConfig)


def test_models_command_lists_bit_with_counts_and_flops():
    from click.testing import CliRunner

    from vitkit.cli import main

    result = CliRunner().invoke(main, ["models", "--family", "bit", "--filter", "r50", "--json"])
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout.strip().splitlines()[-1])["models"]}
    assert set(rows) == {"bit_r50x1", "bit_r50x2", "bit_r50x3", "bit_r50x4"}
    r50 = rows["bit_r50x1"]
    assert r50["family"] == "bit" and r50["params"] == 25_549_352 and r50["resnet_depth"] == 50
    # the convolutions of ResNet-50: 4.09 GMACs at 224 (torchvision's published figure)
    assert abs(r50["gflops"] / 2 - 4.09) < 0.01
