"""Hand a trained run to another program: ONNX or TorchScript files for the encoder, decoder and whole model.

Every file takes a dynamic batch dimension. ONNX files come from torch's
TorchScript-based exporter (``dynamo=False``): it needs nothing beyond torch,
where torch 2.13's default dynamo exporter needs onnxscript, which aelab does
not install. After writing, each ONNX file is run in onnxruntime (when
installed) on random inputs and compared with PyTorch; the largest difference
goes into export.json, next to what the caller must do to inputs first.
"""

from __future__ import annotations

import io
import math
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ._io import atomic_write_bytes, write_json
from .errors import AelabError, RunError
from .run import Run, load_run

FORMATS = ("onnx", "torchscript")
SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
DEFAULT_OPSET = 17


class ExportError(AelabError):
    """The model could not be written in the asked format."""


class _Part(nn.Module):
    """One of the model's entry points as a module of its own, so each exports to its own file.

    ``autoencoder`` is encode then decode: a VAE's mean code, no sampling, so the file is deterministic.
    """

    def __init__(self, model, method: str):
        super().__init__()
        self.model, self.method = model, method

    def forward(self, x):
        if self.method == "autoencoder":
            return self.model.decode(self.model.encode(x))
        return getattr(self.model, self.method)(x)


def parts(run: Run) -> dict[str, tuple[nn.Module, tuple[int, ...], str, str]]:
    """name -> (module, sample shape of its input, input name, output name)."""
    m = run.model
    return {
        "encoder": (_Part(m, "encode").eval(), tuple(m.input_shape), "x", "z"),
        "decoder": (_Part(m, "decode").eval(), tuple(m.code_shape), "z", "x_hat"),
        "autoencoder": (_Part(m, "autoencoder").eval(), tuple(m.input_shape), "x", "x_hat"),
    }


def onnx_bytes(
    module: nn.Module, sample_shape: tuple[int, ...], input_name: str, output_name: str, opset: int = DEFAULT_OPSET
) -> bytes:
    buf = io.BytesIO()
    example = torch.rand(2, *sample_shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter announces its own deprecation on every call
        torch.onnx.export(
            module,
            (example,),
            buf,
            dynamo=False,
            opset_version=opset,
            input_names=[input_name],
            output_names=[output_name],
            dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
        )
    return buf.getvalue()


def torchscript_bytes(module: nn.Module, sample_shape: tuple[int, ...]) -> bytes:
    """Traced, not scripted: the models are plain layer stacks, and tracing needs no annotations.

    Freezing drops the weights the traced path does not use (the decoder from encoder.pt).
    """
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        traced = torch.jit.trace(module, (torch.rand(2, *sample_shape),), check_trace=False)
        torch.jit.save(torch.jit.freeze(traced), buf)
    return buf.getvalue()


def onnx_max_diff(data: bytes, module: nn.Module, sample_shape: tuple[int, ...], batch_sizes=(1, 7)) -> float | None:
    """Largest |onnxruntime - torch| over random batches; None when onnxruntime is not installed."""
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    worst = 0.0
    gen = torch.Generator().manual_seed(0)
    for n in batch_sizes:
        x = torch.rand(n, *sample_shape, generator=gen)
        with torch.no_grad():
            want = module(x).numpy()
        got = sess.run(None, {name: x.numpy()})[0]
        worst = max(worst, float(np.abs(got - want).max()))
    return worst


def preprocessing(run: Run) -> dict[str, Any]:
    """What a caller must do to raw data before the encoder sees it (the exported graphs take model-ready floats)."""
    return run.preprocessor.describe()


def export_run(run: str | Path | Run, out: str | Path, fmt: str = "onnx", opset: int = DEFAULT_OPSET) -> dict[str, Any]:
    """Writes encoder, decoder and autoencoder files plus export.json into ``out``; returns the manifest."""
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}; got '{fmt}'")
    if not isinstance(run, Run):
        run = load_run(run)
    run.model.to("cpu").eval()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: exists and is not a folder; -o takes a folder")
    blobs: dict[str, bytes] = {}
    manifest: dict[str, Any] = {
        "run": str(run.path),
        "format": fmt,
        "model": run.config.model.name,
        "input_shape": list(run.model.input_shape),
        "code_shape": list(run.model.code_shape),
        "output_activation": run.model.output_activation,
        "batch_dimension": "dynamic",
        "preprocessing": preprocessing(run),
        "files": {},
    }
    if fmt == "onnx":
        manifest["opset"] = opset
    # everything is made and checked in memory first, so a failure leaves no partial set of files
    for name, (module, shape, in_name, out_name) in parts(run).items():
        try:
            if fmt == "onnx":
                data = onnx_bytes(module, shape, in_name, out_name, opset)
            else:
                data = torchscript_bytes(module, shape)
        except Exception as e:  # exporter failures carry long internal traces; keep the first line
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ExportError(
                f"{fmt} export of the {name} of {run.path} ({run.config.model.name}) failed: {first}"
            ) from None
        entry: dict[str, Any] = {
            "file": name + SUFFIX[fmt],
            "input": in_name,
            "input_shape": ["batch", *shape],
            "output": out_name,
            "bytes": len(data),
        }
        if fmt == "onnx":
            try:
                diff = onnx_max_diff(data, module, shape)
            except Exception as e:  # onnxruntime's own failures (loading the graph, running it) carry long traces
                first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                raise ExportError(
                    f"onnxruntime could not check the {name} of {run.path} ({run.config.model.name}): "
                    f"{first}; nothing was written"
                ) from None
            if diff is not None:
                entry["onnxruntime_max_abs_diff"] = diff
                if not math.isfinite(diff) or diff > 1e-4:
                    raise ExportError(
                        f"onnx export of the {name} disagrees with PyTorch by {diff:.3g} in onnxruntime; "
                        "nothing was written"
                    )
        blobs[entry["file"]] = data
        manifest["files"][name] = entry
    for fname, data in blobs.items():
        atomic_write_bytes(out / fname, data)
    write_json(out / "export.json", manifest)
    return manifest
