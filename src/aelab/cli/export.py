"""`aelab export`: ONNX or TorchScript files of a trained run, for programs that do not import aelab."""

from __future__ import annotations

import argparse

DESCRIPTION = """\
Write the run's encoder, decoder and whole autoencoder as separate files with a
dynamic batch dimension, plus export.json (shapes, input names, the preprocessing
the inputs need, and for ONNX the largest onnxruntime-vs-PyTorch difference).

  aelab export runs/demo --format onnx -o exported/        encoder.onnx decoder.onnx autoencoder.onnx
  aelab export runs/demo --format torchscript -o ts/       encoder.pt decoder.pt autoencoder.pt

ONNX inputs are named x (samples, float32, shaped (batch, *input_shape)) and z (codes);
outputs z and x_hat. A VAE exports its mean code (no sampling). TorchScript files load
with torch.jit.load and need no aelab.
"""


NAME = "export"


def add_parser(sub) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "export",
        help="write a run's encoder/decoder as ONNX or TorchScript",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("run", help="a finished run directory")
    p.add_argument("--format", choices=["onnx", "torchscript"], default="onnx", help="file format (default onnx)")
    p.add_argument(
        "-o", "--output", required=True, metavar="DIR", help="folder to write the files into (made if missing)"
    )
    p.add_argument("--opset", type=int, default=17, help="ONNX opset version (default 17)")
    return p


def run(a: argparse.Namespace) -> int:
    from ..export import export_run

    m = export_run(a.run, a.output, a.format, a.opset)
    for name, e in m["files"].items():
        diff = e.get("onnxruntime_max_abs_diff")
        check = f"  onnxruntime max |diff| {diff:.2g}" if diff is not None else ""
        print(f"{name:<12} {a.output.rstrip('/')}/{e['file']}  input {e['input']} {tuple(e['input_shape'])}{check}")
    print(f"manifest     {a.output.rstrip('/')}/export.json")
    return 0
