"""Checkpoints: own round trip, Hugging Face parity, timm and official .npz layouts, loud errors."""

import io
import pickle

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

import vitkit
from conftest import randomize, tiny
from vitkit.checkpoints.hf import save_hf_dir

transformers = pytest.importorskip("transformers")

HF_SHAPES = [
    dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
         image_size=32, patch_size=8, num_channels=3, num_labels=5),
    dict(hidden_size=48, num_hidden_layers=3, num_attention_heads=3, intermediate_size=96,
         image_size=28, patch_size=14, num_channels=1, num_labels=3, qkv_bias=False),
    dict(hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=128,
         image_size=24, patch_size=4, num_channels=3, num_labels=10, layer_norm_eps=1e-6),
]


def hf_classifier(**shape):
    config = transformers.ViTConfig(**shape)
    return randomize(transformers.ViTForImageClassification(config)).eval()


@pytest.mark.parametrize("shape", HF_SHAPES, ids=["p8", "p14-gray-nobias", "p4-eps6"])
@pytest.mark.parametrize("layout", ["save_pretrained", "state_dict_safetensors", "state_dict_bin"])
def test_hugging_face_import_gives_the_same_logits(tmp_path, shape, layout):
    hf = hf_classifier(**shape)
    if layout == "save_pretrained":
        hf.save_pretrained(tmp_path / "hf")
        path = tmp_path / "hf"
    elif layout == "state_dict_safetensors":
        path = tmp_path / "hf.safetensors"
        save_file({k: v.contiguous() for k, v in hf.state_dict().items()}, str(path))
    else:
        path = tmp_path / "pytorch_model.bin"
        torch.save(hf.state_dict(), path)
    overrides = {} if layout == "save_pretrained" else {"norm_eps": hf.config.layer_norm_eps}
    if layout != "save_pretrained":
        overrides["num_heads"] = shape["num_attention_heads"]
    ours = vitkit.load_model(path, **overrides).eval()
    x = torch.randn(3, shape["num_channels"], shape["image_size"], shape["image_size"])
    with torch.no_grad():
        expected = hf(pixel_values=x).logits
        got = ours(x)
    assert ours.config.norm_eps == hf.config.layer_norm_eps
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()


def test_hugging_face_vit_model_pooler_is_the_pre_logits_layer(tmp_path):
    config = transformers.ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                    intermediate_size=64, image_size=16, patch_size=8)
    hf = randomize(transformers.ViTModel(config, add_pooling_layer=True)).eval()
    hf.save_pretrained(tmp_path / "hf")
    ours = vitkit.load_model(tmp_path / "hf").eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out = hf(pixel_values=x)
        assert torch.allclose(ours(x), out.pooler_output, atol=1e-5)
        assert torch.allclose(ours.forward_features(x), out.last_hidden_state, atol=1e-5)


def test_export_to_hugging_face_round_trips(tmp_path):
    ours = randomize(tiny(num_classes=4, norm_eps=1e-6)).eval()
    save_hf_dir(ours, tmp_path / "export")
    hf = transformers.ViTForImageClassification.from_pretrained(tmp_path / "export")
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(hf.eval()(pixel_values=x).logits, ours(x), atol=1e-5)


@pytest.mark.parametrize("act", ["gelu_pytorch_tanh", "gelu_new"])
def test_tanh_gelu_models_import_and_export_with_their_gelu(tmp_path, act):
    hf = hf_classifier(**HF_SHAPES[0], hidden_act=act)
    hf.save_pretrained(tmp_path / "hf")
    ours = vitkit.load_model(tmp_path / "hf").eval()
    assert ours.config.gelu == "tanh"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), hf(pixel_values=x).logits, atol=1e-5)
    save_hf_dir(ours, tmp_path / "export")
    back = transformers.ViTForImageClassification.from_pretrained(tmp_path / "export").eval()
    assert back.config.hidden_act == "gelu_pytorch_tanh"
    with torch.no_grad():
        assert torch.allclose(back(pixel_values=x).logits, ours(x), atol=1e-5)


def test_import_at_new_resolution_matches_hf_interpolation_and_head_reset(tmp_path):
    hf = hf_classifier(**HF_SHAPES[0])
    hf.save_pretrained(tmp_path / "hf")
    ours = vitkit.load_model(tmp_path / "hf", img_size=48).eval()
    assert ours.grid == (6, 6) and ours.pos_embed.shape == (1, 37, 32)
    x = torch.randn(2, 3, 48, 48)
    with torch.no_grad():
        expected = hf(pixel_values=x, interpolate_pos_encoding=True).logits
        assert torch.allclose(ours(x), expected, atol=1e-5)
    fresh = vitkit.load_model(tmp_path / "hf", num_classes=2)
    assert fresh.head.out_features == 2 and torch.count_nonzero(fresh.head.weight) == 0


@pytest.mark.parametrize("form", ["dir", "file"])
@pytest.mark.parametrize("options", [{}, {"pool": "gap", "pos_embed": "sincos", "stride": 4,
                                          "representation_size": 8, "img_size": (32, 48)}])
def test_own_format_round_trip_is_exact(tmp_path, form, options):
    m = randomize(tiny("vit_ti8", **options)).eval()
    target = tmp_path / ("model" if form == "dir" else "model.safetensors")
    m.save(target)
    back = vitkit.load_model(target).eval()
    assert back.config == m.config
    x = torch.randn(2, 3, *m.config.img_size)
    assert torch.equal(back(x), m(x))


def test_timm_layout_loads_with_heads_from_the_file_name(tmp_path):
    m = randomize(vitkit.create_model("vit_s16", embed_dim=48, depth=2, num_heads=6, img_size=32,
                                      num_classes=3)).eval()
    path = tmp_path / "vit_small_patch16_224.pth"
    torch.save({"model": m.state_dict()}, path)  # a training wrapper around the state dict
    back = vitkit.load_model(path).eval()
    assert back.config.num_heads == 6 and back.config.img_size == (32, 32)
    x = torch.randn(2, 3, 32, 32)
    assert torch.allclose(back(x), m(x), atol=1e-6)


def to_official_npz(m) -> dict[str, np.ndarray]:
    """Write a model in the layout of the official JAX release (google-research/vision_transformer)."""
    c, sd = m.config, {k: v.detach().numpy() for k, v in m.state_dict().items()}
    d, h = c.embed_dim, c.num_heads
    out = {"embedding/kernel": sd["patch_embed.proj.weight"].transpose(2, 3, 1, 0),
           "embedding/bias": sd["patch_embed.proj.bias"], "cls": sd["cls_token"],
           "Transformer/posembed_input/pos_embedding": sd["pos_embed"],
           "Transformer/encoder_norm/scale": sd["norm.weight"], "Transformer/encoder_norm/bias": sd["norm.bias"],
           "head/kernel": sd["head.weight"].T, "head/bias": sd["head.bias"]}
    for i in range(c.depth):
        b, o = f"Transformer/encoderblock_{i}/", f"blocks.{i}."
        a = b + "MultiHeadDotProductAttention_1/"
        for j, n in enumerate(("query", "key", "value")):
            out[f"{a}{n}/kernel"] = sd[o + "attn.qkv.weight"][j * d:(j + 1) * d].T.reshape(d, h, d // h)
            out[f"{a}{n}/bias"] = sd[o + "attn.qkv.bias"][j * d:(j + 1) * d].reshape(h, d // h)
        out[a + "out/kernel"] = sd[o + "attn.proj.weight"].T.reshape(h, d // h, d)
        out[a + "out/bias"] = sd[o + "attn.proj.bias"]
        for j, norm in ((0, "norm1"), (2, "norm2")):
            out[f"{b}LayerNorm_{j}/scale"], out[f"{b}LayerNorm_{j}/bias"] = sd[o + norm + ".weight"], sd[o + norm + ".bias"]
        for j, fc in ((0, "fc1"), (1, "fc2")):
            out[f"{b}MlpBlock_3/Dense_{j}/kernel"] = sd[f"{o}mlp.{fc}.weight"].T
            out[f"{b}MlpBlock_3/Dense_{j}/bias"] = sd[f"{o}mlp.{fc}.bias"]
    return out


def flax_reference_logits(p: dict[str, np.ndarray], x: np.ndarray, depth: int, exact: bool = False) -> np.ndarray:
    """The official model's maths written directly on the .npz arrays (NHWC, Flax layouts)."""
    def ln(v, s, b):
        mu, var = v.mean(-1, keepdims=True), v.var(-1, keepdims=True)
        return (v - mu) / np.sqrt(var + 1e-6) * s + b

    def gelu(v):  # flax's nn.gelu (jax.nn.gelu, approximate=True by default): the tanh form
        if exact:
            from scipy.special import erf
            return 0.5 * v * (1 + erf(v / np.sqrt(2)))
        return 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3)))

    k = p["embedding/kernel"]  # (P, P, C, D)
    P = k.shape[0]
    n, hh, ww, c = x.shape
    patches = x.reshape(n, hh // P, P, ww // P, P, c).transpose(0, 1, 3, 2, 4, 5).reshape(n, -1, P, P, c)
    z = np.einsum("nlpqc,pqcd->nld", patches, k) + p["embedding/bias"]
    z = np.concatenate([np.repeat(p["cls"], n, 0), z], 1) + p["Transformer/posembed_input/pos_embedding"]
    for i in range(depth):
        b = f"Transformer/encoderblock_{i}/"
        a = b + "MultiHeadDotProductAttention_1/"
        y = ln(z, p[b + "LayerNorm_0/scale"], p[b + "LayerNorm_0/bias"])
        q, kk, v = (np.einsum("nld,dhk->nlhk", y, p[f"{a}{t}/kernel"]) + p[f"{a}{t}/bias"] for t in ("query", "key", "value"))
        logits = np.einsum("nqhk,nmhk->nhqm", q, kk) / np.sqrt(q.shape[-1])
        w = np.exp(logits - logits.max(-1, keepdims=True))
        w /= w.sum(-1, keepdims=True)
        att = np.einsum("nhqm,nmhk->nqhk", w, v)
        z = z + np.einsum("nqhk,hkd->nqd", att, p[a + "out/kernel"]) + p[a + "out/bias"]
        y = ln(z, p[b + "LayerNorm_2/scale"], p[b + "LayerNorm_2/bias"])
        y = gelu(y @ p[b + "MlpBlock_3/Dense_0/kernel"] + p[b + "MlpBlock_3/Dense_0/bias"])
        z = z + y @ p[b + "MlpBlock_3/Dense_1/kernel"] + p[b + "MlpBlock_3/Dense_1/bias"]
    z = ln(z, p["Transformer/encoder_norm/scale"], p["Transformer/encoder_norm/bias"])
    return z[:, 0] @ p["head/kernel"] + p["head/bias"]


def test_official_npz_import_matches_the_flax_maths(tmp_path):
    source = randomize(tiny("vit_ti8", embed_dim=24, num_heads=3, depth=2))
    arrays = {k: v.astype(np.float64) for k, v in to_official_npz(source).items()}
    np.savez(tmp_path / "ViT-Ti_8.npz", **arrays)
    ours = vitkit.load_model(tmp_path / "ViT-Ti_8.npz").eval()
    assert ours.config.num_heads == 3 and ours.config.embed_dim == 24
    x = np.random.default_rng(0).normal(size=(2, 32, 32, 3))
    expected = flax_reference_logits(arrays, x, depth=2)
    got = ours(torch.from_numpy(x).float().permute(0, 3, 1, 2)).detach().double().numpy()
    assert ours.config.gelu == "tanh"
    err, err_erf = np.abs(got - expected).max(), np.abs(got - flax_reference_logits(arrays, x, 2, exact=True)).max()
    assert err < 1e-5 and err_erf > 10 * err, (err, err_erf)  # flax's GELU, measurably not the erf one


def test_truncated_checkpoint_is_a_clear_error(tmp_path):
    m = tiny()
    m.save(tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "m.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(vitkit.CheckpointError, match="truncated or corrupt"):
        vitkit.load_model(tmp_path / "m.safetensors")


def test_mismatched_checkpoint_names_missing_and_wrong_tensors(tmp_path):
    sd = randomize(tiny()).state_dict()
    sd.pop("blocks.1.mlp.fc2.weight")
    sd["blocks.0.norm1.weight"] = torch.ones(7)
    torch.save(sd, tmp_path / "vit_tiny_patch16_224.pth")
    with pytest.raises(vitkit.CheckpointError) as err:
        vitkit.load_model(tmp_path / "vit_tiny_patch16_224.pth", num_heads=2)
    msg = str(err.value)
    assert "missing tensors (1): blocks.1.mlp.fc2.weight" in msg
    assert "blocks.0.norm1.weight: checkpoint (7,) vs model (32,)" in msg


def test_loading_never_runs_code_from_a_pickle(tmp_path):
    class Evil:
        def __reduce__(self):
            return (exec, ("import pathlib; pathlib.Path('pwned').write_text('x')",))

    path = tmp_path / "evil.pth"
    path.write_bytes(pickle.dumps({"w": Evil()}))
    with pytest.raises(vitkit.CheckpointError, match="weights-only"):
        vitkit.load_model(path)
    assert not (tmp_path / "pwned").exists()


def test_unknown_files_and_fixed_fields_are_clear_errors(tmp_path):
    (tmp_path / "w.txt").write_text("hi")
    with pytest.raises(vitkit.CheckpointError, match="unknown checkpoint type '.txt'"):
        vitkit.load_model(tmp_path / "w.txt")
    with pytest.raises(FileNotFoundError):
        vitkit.load_model(tmp_path / "nope.safetensors")
    tiny().save(tmp_path / "m")
    with pytest.raises(vitkit.CheckpointError, match=r"cannot override \['embed_dim'\]"):
        vitkit.load_model(tmp_path / "m", embed_dim=64)
    buf = io.BytesIO()
    np.savez(buf, a=np.zeros(3))
    (tmp_path / "x.npz").write_bytes(buf.getvalue())
    with pytest.raises(vitkit.CheckpointError, match="not an official ViT .npz"):
        vitkit.load_model(tmp_path / "x.npz")
