"""Export a model for other runtimes: ONNX, vitkit's safetensors format, a Hugging Face folder.

Every export proves itself: the written file is loaded back by its own runtime (onnxruntime,
vitkit, transformers) and its logits are compared with PyTorch's on the same random input.
The ONNX graph takes normalised pixels, (batch, C, H, W) float32 with a dynamic batch axis;
the preprocessing it expects (img_size, mean, std, class names) travels in its metadata.
"""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Any

import torch

FORMATS = ("onnx", "safetensors", "hf")
TOLERANCE = 1e-4  # max abs logit difference an export may show
CHECK_BATCHES = (1, 3)  # the ONNX graph is run at two batch sizes: the batch axis must really be dynamic


class ExportError(RuntimeError):
    """An export that could not be written or does not reproduce the model."""


def _probe_input(config, batch: int, seed: int = 0) -> torch.Tensor:
    """Random normalised images (batch, C, H, W), the same for every runtime."""
    h, w = config.img_size
    return torch.randn(batch, config.in_chans, h, w, generator=torch.Generator().manual_seed(seed + batch))


def _cpu_copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).cpu().float().eval()


def _check(name: str, diffs: dict[int, float], tolerance: float) -> None:
    worst = max(diffs.values())
    if not worst <= tolerance:  # also catches NaN
        raise ExportError(f"{name} export does not reproduce the model: max abs logit difference {worst:.3g} "
                          f"> {tolerance:g} (per batch size: {diffs})")


# ---- ONNX ------------------------------------------------------------------------------------
def export_onnx(model: torch.nn.Module, path: str | Path, opset: int = 17, tolerance: float = TOLERANCE
                ) -> dict[str, Any]:
    """Write an ONNX graph with a dynamic batch axis and check it with onnxruntime at two batch sizes."""
    import onnx

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    m = _cpu_copy(model)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter warns about its own deprecation
        # dynamo=False: the TorchScript exporter is quick and exact for this model; the dynamo one takes
        # ~10x longer on CPU and needs onnxscript.
        torch.onnx.export(m, (_probe_input(m.config, 2),), str(path), dynamo=False, opset_version=opset,
                          input_names=["pixel_values"], output_names=["logits"],
                          dynamic_axes={"pixel_values": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load(str(path))
    c = m.config
    meta = {"producer": "vitkit", "input": "normalised pixels (batch, C, H, W) float32",
            "img_size": json.dumps(list(c.img_size)), "mean": json.dumps(list(c.mean or (0.5,) * c.in_chans)),
            "std": json.dumps(list(c.std or (0.5,) * c.in_chans)), "class_names": json.dumps(c.class_names),
            "vitkit_config": c.to_json()}
    onnx.helper.set_model_props(graph, meta)
    onnx.save(graph, str(path))
    diffs = check_onnx(m, path)
    _check("ONNX", diffs, tolerance)
    return {"format": "onnx", "out": str(path), "opset": opset, "max_abs_diff": diffs}


def check_onnx(model: torch.nn.Module, path: str | Path, batches=CHECK_BATCHES) -> dict[int, float]:
    """{batch size: max abs difference} between onnxruntime and PyTorch logits."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    m = _cpu_copy(model)
    diffs = {}
    for b in batches:
        x = _probe_input(m.config, b)
        with torch.no_grad():
            want = m(x)
        got = torch.from_numpy(session.run(["logits"], {"pixel_values": x.numpy()})[0])
        if got.shape != want.shape:
            raise ExportError(f"ONNX output has shape {tuple(got.shape)} for batch {b}, PyTorch {tuple(want.shape)}")
        diffs[b] = float((got - want).abs().max())
    return diffs


# ---- vitkit's own format -----------------------------------------------------------------------
def export_safetensors(model: torch.nn.Module, path: str | Path, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """vitkit's format: `x.safetensors` (+ x.json) for a file name, else a folder; checked by reloading."""
    from vitkit.checkpoints import load_model

    m = _cpu_copy(model)
    weights = m.save(path)
    back = load_model(path).eval()
    x = _probe_input(m.config, 2)
    with torch.no_grad():
        diffs = {2: float((back(x) - m(x)).abs().max())}
    _check("safetensors", diffs, tolerance)
    return {"format": "safetensors", "out": str(path), "weights": str(weights), "max_abs_diff": diffs}


# ---- Hugging Face --------------------------------------------------------------------------------
def export_hf(model: torch.nn.Module, path: str | Path, tolerance: float = TOLERANCE) -> dict[str, Any]:
    """A `save_pretrained`-style folder (config.json, model.safetensors, preprocessor_config.json)
    that `transformers.ViTForImageClassification.from_pretrained` loads; checked with transformers
    when it is installed."""
    from vitkit.checkpoints.common import CheckpointError
    from vitkit.checkpoints.hf import save_hf_dir

    m = _cpu_copy(model)
    try:
        save_hf_dir(m, path)
    except CheckpointError as e:
        raise ExportError(str(e)) from e
    diffs = check_hf(m, path)
    result: dict[str, Any] = {"format": "hf", "out": str(path), "max_abs_diff": diffs}
    if diffs is None:
        result["note"] = "transformers is not installed: the folder was not checked"
    else:
        _check("Hugging Face", diffs, tolerance)
    return result


def check_hf(model: torch.nn.Module, path: str | Path) -> dict[int, float] | None:
    """{batch size: max abs logit difference} of transformers' model from `path`; None without transformers."""
    try:
        from transformers import ViTForImageClassification
    except ImportError:
        return None
    hf = ViTForImageClassification.from_pretrained(str(path)).eval()
    x = _probe_input(model.config, 2)
    with torch.no_grad():
        got = hf(pixel_values=x).logits
        want = model(x)
    return {2: float((got - want).abs().max())}


def export_model(model: torch.nn.Module, fmt: str, out: str | Path) -> dict[str, Any]:
    """Export in one of FORMATS to `out`; returns what was written and the check's numbers."""
    if fmt == "onnx":
        return export_onnx(model, out)
    if fmt == "safetensors":
        return export_safetensors(model, out)
    if fmt == "hf":
        return export_hf(model, out)
    raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")


def default_out(checkpoint: str | Path, fmt: str) -> Path:
    """`<name>.onnx`, `<name>.safetensors` or `<name>-hf/` in the current folder."""
    source = Path(checkpoint).resolve()
    stem = source.stem if source.suffix in (".safetensors", ".pth", ".pt", ".bin", ".npz") else source.name
    out = Path({"onnx": f"{stem}.onnx", "safetensors": f"{stem}.safetensors", "hf": f"{stem}-hf"}[fmt])
    if out.resolve() == source:  # never write over the checkpoint being exported
        out = out.with_name(f"{stem}-export{out.suffix}")
    return out
