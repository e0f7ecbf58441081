"""The paper's transfer workflow end to end on CPU: pre-train a tiny ViT on digits 0-4, fine-tune it
on digits 5-9 at twice the resolution, then eval, few-shot, predict on image files, export."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from conftest import randomize, tiny
from PIL import Image

import vitkit
from vitkit.augment import preprocess_eval, resize
from vitkit.cli import main
from vitkit.data import load_data
from vitkit.layers import resample_pos_embed
from vitkit.train import TrainConfig, Trainer, pretrained_model, train

# Pre-training: 8x8 digits in 2x2 patches (a 4x4 grid), width 32, depth 2; ~5 s on one CPU thread.
PRETRAIN = dict(model="vit_ti4", data="digits", classes=[0, 1, 2, 3, 4], img_size=8,
                model_overrides=dict(patch_size=2, embed_dim=32, depth=2, num_heads=2, mlp_dim=64),
                batch_size=32, lr=3e-3, steps=150, warmup_fraction=0.1, augment=dict(crop="none", hflip=False),
                progress=False, log_every=50, checkpoint_every=0)
# Fine-tuning flags on top of the paper-finetune preset: 16x16 (an 8x8 grid), 200 SGD steps.
FINETUNE = ["--data", "digits", "--classes", "[5, 6, 7, 8, 9]", "--img-size", "16", "--batch-size", "32",
            "--lr", "0.1", "--warmup-steps", "20", "--crop", "none", "--hflip", "false", "--progress", "false",
            "--log-every", "50"]
CLASSES = ["5", "6", "7", "8", "9"]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: two intra-op threads cost more in wake-ups than they gain (15x slower on 2 shared cores).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "run"
    summary = train(TrainConfig().with_overrides({**PRETRAIN, "out": str(out)}))
    assert summary["val_top1"] > 0.8, summary
    return out


def invoke(args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output + (str(result.exception) if result.exception else "")
    return json.loads(result.stdout.strip().splitlines()[-1]) if "--json" in args else None


@pytest.fixture(scope="module")
def finetuned(pretrained, tmp_path_factory):
    out = tmp_path_factory.mktemp("ft") / "run"
    summary = invoke(["finetune", pretrained, *FINETUNE, "--steps", "200", "--out", out, "--json"])
    return out, summary


def test_finetune_resamples_positions_and_trains_a_new_head(pretrained, finetuned):
    out, summary = finetuned
    print(f"fine-tune on digits 5-9 at 16x16: val top-1 {summary['val_top1']:.4f} in {summary['seconds']:.1f} s")
    pre_summary = json.loads((pretrained / "summary.json").read_text())
    assert set(summary) == set(pre_summary)  # the training engine's summary, unchanged
    assert summary["model"] == str(pretrained.resolve()) and summary["steps"] == 200
    assert summary["val_top1"] >= 0.9, summary
    model, source = vitkit.load_model(out), vitkit.load_model(pretrained)
    c = model.config
    assert c.img_size == (16, 16) and c.patch_size == 2 and model.grid == (8, 8)
    assert model.pos_embed.shape == (1, 1 + 64, 32) and source.pos_embed.shape == (1, 1 + 16, 32)
    assert c.class_names == CLASSES and c.num_classes == 5
    assert c.mean == source.config.mean and c.std == source.config.std  # the checkpoint's normalisation
    saved = TrainConfig.load(out / "config.yaml")
    assert saved.init_checkpoint == str(pretrained.resolve()) and saved.preset == "paper-finetune"
    assert (saved.optimizer, saved.momentum, saved.weight_decay, saved.grad_clip, saved.schedule) == \
        ("sgd", 0.9, 0.0, 1.0, "cosine")


def test_pretrained_model_adapts_every_checkpoint_format(tmp_path):
    from test_checkpoints import to_official_npz

    from vitkit.checkpoints.hf import save_hf_dir

    src = randomize(tiny(patch_size=8, img_size=32, num_classes=7)).eval()
    with_pooler = randomize(tiny(patch_size=8, img_size=32, num_classes=7, representation_size=24)).eval()
    with_pooler.save(tmp_path / "own")
    save_hf_dir(src, tmp_path / "hf")
    torch.save(src.state_dict(), tmp_path / "weights.pth")  # timm layout; heads are not in the tensors
    np.savez(tmp_path / "ViT-Ti_8.npz", **to_official_npz(src))
    data = load_data("digits", classes=[5, 6, 7, 8, 9])
    data.in_chans = 3  # only the bookkeeping is read: pretend the digits are RGB
    for path, ref in [("own", with_pooler), ("hf", src), ("weights.pth", src), ("ViT-Ti_8.npz", src)]:
        m = pretrained_model(tmp_path / path, data, (48, 48), {"num_heads": 2} if path == "weights.pth" else {})
        assert m.config.num_classes == 5 and m.config.class_names == CLASSES, path
        assert torch.all(m.head.weight == 0) and torch.all(m.head.bias == 0), path
        assert isinstance(m.pre_logits, torch.nn.Identity) and m.config.representation_size is None, path
        want = resample_pos_embed(ref.pos_embed.detach(), (4, 4), (6, 6), 1, "bicubic")
        assert torch.allclose(m.pos_embed, want, atol=1e-5), path  # 4x4 grid -> 6x6, class token apart
        assert torch.equal(m.pos_embed[:, :1], ref.pos_embed[:, :1].detach()), path
        assert torch.allclose(m.blocks[1].mlp.fc2.weight, ref.blocks[1].mlp.fc2.weight, atol=1e-6), path
    same = pretrained_model(tmp_path / "hf", _rgb_bundle(7), (32, 32))
    assert torch.all(same.head.weight == 0)  # same class count: still a fresh head...
    kept = pretrained_model(tmp_path / "hf", _rgb_bundle(7), (32, 32), keep_head=True)
    assert torch.equal(kept.head.weight, src.head.weight)  # ...unless asked to keep it
    gray = load_data("digits", classes=[5, 6, 7, 8, 9])
    with pytest.raises(ValueError, match="3-channel images but .* 1-channel"):
        pretrained_model(tmp_path / "hf", gray, (32, 32))


def _rgb_bundle(k):
    data = load_data("digits", classes=list(range(k)))
    data.in_chans = 3
    return data


class Interrupt(Exception):
    pass


def test_finetune_resumes_exactly(pretrained, tmp_path, monkeypatch):
    args = [pretrained, *FINETUNE, "--steps", "20", "--checkpoint-every", "10"]
    invoke(["finetune", *args, "--out", tmp_path / "straight"])
    original, calls = Trainer.train_step, {"n": 0}

    def dying_step(self, batches):
        calls["n"] += 1
        if calls["n"] == 15:  # dies between checkpoints
            raise Interrupt
        return original(self, batches)

    monkeypatch.setattr(Trainer, "train_step", dying_step)
    result = CliRunner().invoke(main, ["finetune", *map(str, args), "--out", str(tmp_path / "resumed")])
    assert isinstance(result.exception, Interrupt)
    resumed_steps = []

    def counting_step(self, batches):
        resumed_steps.append(1)
        return original(self, batches)

    monkeypatch.setattr(Trainer, "train_step", counting_step)
    summary = invoke(["finetune", "--resume", tmp_path / "resumed", "--json"])
    assert summary["steps"] == 20 and len(resumed_steps) == 10  # continued from the step-10 checkpoint
    a = vitkit.load_model(tmp_path / "straight").state_dict()
    b = vitkit.load_model(tmp_path / "resumed").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_eval_gives_test_accuracy_and_reproduces_the_runs_validation(finetuned):
    out, summary = finetuned
    test = invoke(["eval", out, "--json"])  # data and classes come from the run
    print(f"eval on the test split of digits 5-9: top-1 {test['top1']:.4f}, top-5 {test['top5']:.4f}")
    assert test["split"] == "test" and test["n"] == 179
    assert 0.85 <= test["top1"] <= test["top5"] <= 1.0
    confusion = np.array(test["confusion"])
    assert confusion.shape == (5, 5) and confusion.sum() == 179
    assert np.trace(confusion) / 179 == pytest.approx(test["top1"])
    assert list(test["per_class"]) == CLASSES
    assert test["per_class"]["6"] == pytest.approx(confusion[1, 1] / confusion[1].sum())
    png = Path(test["confusion_png"])
    assert png.parent == out and png.stat().st_size > 5000
    assert np.asarray(Image.open(png).convert("L")).std() > 10
    val = invoke(["eval", out, "--data", "digits", "--classes", "5,6,7,8,9", "--split", "val", "--json"])
    assert val["top1"] == pytest.approx(summary["val_top1"], abs=1e-12)  # same split, same preprocessing
    flipped = invoke(["eval", out, "--tta", "flip", "--json"])
    assert flipped["tta"] == "flip" and flipped["n"] == 179 and flipped["loss"] != test["loss"]


def test_eval_on_data_with_other_classes_is_a_clear_error(pretrained):
    result = CliRunner().invoke(main, ["eval", str(pretrained), "--data", "digits", "--classes", "0,1,2"])
    assert result.exit_code != 0 and "the model has 5 classes" in result.output and "--classes" in result.output
    result = CliRunner().invoke(main, ["eval", str(pretrained), "--data", "cifar10:/nonexistent"])
    assert result.exit_code != 0 and "Traceback" not in result.output


def test_fewshot_linear_evaluation_of_the_pretrained_features(pretrained):
    res = invoke(["fewshot", pretrained, "--data", "digits", "--classes", "5,6,7,8,9", "--shots", 1, 5, 10, 25,
                  "--seeds", 3, "--json"])
    shots = res["shots"]
    print("few-shot on digits 5-9 from 0-4 features:",
          {n: f"{100 * s['mean']:.1f} +- {100 * s['std']:.1f}" for n, s in shots.items()})
    assert list(shots) == ["1", "5", "10", "25"] and res["feature_dim"] == 32 and res["n_test"] == 179
    for s in shots.values():
        assert len(s["accuracies"]) == 3 and s["std"] == pytest.approx(np.std(s["accuracies"], ddof=1))
        assert s["mean"] == pytest.approx(np.mean(s["accuracies"]))
    assert shots["25"]["mean"] > 0.45  # chance is 0.2
    assert shots["25"]["mean"] > shots["1"]["mean"]


def digit_files(folder, model, count=60):
    """Test digits of classes 5-9 as 16x16 PNGs, upsampled as training upsamples them (so the file
    holds exactly what the model saw); returns their uint8 (N, 1, 16, 16) pixels and labels."""
    data = load_data("digits", classes=[5, 6, 7, 8, 9])
    images, labels = data.test.images[:count], data.test.labels[:count]
    up = (resize(images.float() / 255, model.config.img_size) * 255).round().clamp(0, 255).to(torch.uint8)
    folder.mkdir()
    for i, (img, y) in enumerate(zip(up, labels)):
        Image.fromarray(img[0].numpy()).save(folder / f"{i:03d}_{CLASSES[y]}.png")
    return up, labels


def test_predict_on_image_files_agrees_with_the_model(finetuned, tmp_path):
    out, _ = finetuned
    model = vitkit.load_model(out).eval()
    pixels, labels = digit_files(tmp_path / "digits", model)
    res = invoke(["predict", out, tmp_path / "digits", "--topk", "3", "--json"])
    preds = res["predictions"]
    assert len(preds) == 60 and all(p["error"] is None and len(p["top"]) == 3 for p in preds)
    with torch.no_grad():
        probs = model(preprocess_eval(pixels, (16, 16), model.config.mean, model.config.std)).softmax(-1)
    for p, row in zip(preds, probs):
        top = row.topk(3)
        assert [t["label"] for t in p["top"]] == [CLASSES[i] for i in top.indices]
        assert [t["prob"] for t in p["top"]] == pytest.approx(top.values.tolist(), abs=1e-5)
    assert [Path(p["path"]).stem.split("_")[1] for p in preds] == [CLASSES[y] for y in labels]  # file order kept
    correct = sum(p["top"][0]["label"] == CLASSES[y] for p, y in zip(preds, labels))
    assert correct / 60 >= 0.8


def test_export_onnx_hf_and_safetensors_reproduce_the_model(finetuned, tmp_path):
    import onnx
    import onnxruntime as ort
    from transformers import ViTForImageClassification

    out, _ = finetuned
    model = vitkit.load_model(out).eval()
    data = load_data("digits", classes=[5, 6, 7, 8, 9])
    x = preprocess_eval(data.test.images, (16, 16), model.config.mean, model.config.std)  # (179, 1, 16, 16)
    with torch.no_grad():
        want = model(x)

    res = invoke(["export", out, "--format", "onnx", "--out", tmp_path / "m.onnx", "--json"])
    assert set(res["max_abs_diff"]) == {"1", "3"} and max(res["max_abs_diff"].values()) < 1e-4
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    got = torch.from_numpy(session.run(None, {"pixel_values": x.numpy()})[0])  # a batch of 179
    assert got.shape == (179, 5) and (got - want).abs().max() < 1e-4
    assert torch.equal(got.argmax(-1), want.argmax(-1))
    meta = {p.key: p.value for p in onnx.load(str(tmp_path / "m.onnx")).metadata_props}
    assert json.loads(meta["class_names"]) == CLASSES and json.loads(meta["mean"]) == list(model.config.mean)

    res = invoke(["export", out, "--format", "hf", "--out", tmp_path / "hf", "--json"])
    assert res["max_abs_diff"]["2"] < 1e-4
    hf = ViTForImageClassification.from_pretrained(str(tmp_path / "hf")).eval()
    with torch.no_grad():
        assert (hf(pixel_values=x).logits - want).abs().max() < 1e-4
    assert hf.config.id2label[0] == "5" and hf.config.num_channels == 1
    back = vitkit.load_model(tmp_path / "hf")
    assert back.config.class_names == CLASSES and back.config.mean == pytest.approx(model.config.mean)

    invoke(["export", out, "--format", "safetensors", "--out", tmp_path / "m.safetensors", "--json"])
    with torch.no_grad():
        assert torch.equal(vitkit.load_model(tmp_path / "m.safetensors")(x), want)
