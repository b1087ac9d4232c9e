#!/usr/bin/env python3
"""Export torchvision's ResNet-50 as the SageMaker MME GPU launch post does.

Writes into --out (default: triton-models/workspace/):
  model.pt    TorchScript, traced with a 1x3x224x224 example (Triton's pytorch_libtorch backend)
  model.onnx  ONNX with a dynamic batch axis, input "input", output "output" (for trtexec -> model.plan)

Weights: --weights pretrained downloads torchvision's IMAGENET1K_V2 weights (needs internet access);
--weights random builds the same network with random weights (same shapes and sizes, meaningless
classes); --weights auto (default) tries pretrained and falls back to random, saying so.

After export, both files are checked: the TorchScript module and the ONNX model (run by onnxruntime,
when installed) must agree with the eager model on the same input.
"""
import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
# The Triton release the image ships, and the libtorch it loads TorchScript with (deploy/triton-release.json).
with open(os.path.join(HERE, "..", "deploy", "triton-release.json")) as f:
    RELEASE = json.load(f)

torch = None  # imported in main(), after the arguments (so --help works without torch)
torchvision = None


def import_torch():
    global torch
    try:
        import torch as t
    except ImportError:
        raise SystemExit(
            f"export_resnet50: torch is not installed; for Triton {RELEASE['tritonRelease']} install "
            f"torch=={RELEASE['torch']}.* torchvision=={RELEASE['torchvision']}.*"
        )
    torch = t


def check_torch(allow_any: bool) -> None:
    """TorchScript files load in the libtorch that saved them or a newer one, never reliably in an older one:
    the export's torch must be the release's (major.minor), or the file may not load in Triton."""
    have = ".".join(torch.__version__.split("+")[0].split(".")[:2])
    if have == RELEASE["libtorch"]:
        return
    message = (
        f"torch {torch.__version__} is installed, but Triton {RELEASE['tritonRelease']} loads TorchScript with libtorch "
        f"{RELEASE['libtorch']}: a newer torch may save operators it does not know. Install "
        f"torch=={RELEASE['torch']}.* torchvision=={RELEASE['torchvision']}.*, or run this inside "
        f"nvcr.io/nvidia/pytorch:{RELEASE['tritonRelease']}-py3"
    )
    if not allow_any:
        raise SystemExit(f"export_resnet50: {message} (--any-torch exports anyway, for the emulator only)")
    print(f"warning: {message}", file=sys.stderr)


def import_torchvision():
    """Imports torchvision; tolerates a torchvision whose compiled ops do not match the installed torch.

    A CPU-only torch beside a CUDA build of torchvision (as pip gives on some machines) cannot load
    torchvision's C++ ops (nms, roi_align...), and torchvision's import fails registering their shapes.
    ResNet-50 uses none of them, so the registrations are skipped in that case only.
    """
    try:
        import torchvision

        return torchvision
    except RuntimeError as err:
        if "torchvision::" not in str(err):
            raise
        print(f"note: torchvision's compiled ops do not load ({err}); ResNet-50 does not need them", file=sys.stderr)
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        register_fake = torch.library.register_fake
        torch.library.register_fake = lambda *a, **k: (lambda f: f)
        try:
            import torchvision

            return torchvision
        finally:
            torch.library.register_fake = register_fake




def build(weights: str):
    if weights in ("pretrained", "auto"):
        try:
            w = torchvision.models.ResNet50_Weights.IMAGENET1K_V2
            model = torchvision.models.resnet50(weights=w)
            return model, "pretrained IMAGENET1K_V2"
        except Exception as err:  # no network, no cache
            if weights == "pretrained":
                raise SystemExit(f"cannot download pretrained weights: {err}")
            print(f"pretrained weights unavailable ({type(err).__name__}); using random weights", file=sys.stderr)
    torch.manual_seed(0)
    return torchvision.models.resnet50(weights=None), "random (seed 0)"


def export_onnx(model, example, path):
    kwargs = dict(
        input_names=["input"],
        output_names=["output"],
        dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}},
        opset_version=17,
    )
    try:  # The TorchScript-based exporter: no extra dependencies, dynamic batch via dynamic_axes.
        torch.onnx.export(model, example, path, dynamo=False, **kwargs)
    except TypeError:  # torch older than 2.5 has no `dynamo` argument
        torch.onnx.export(model, example, path, **kwargs)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default=os.path.join(HERE, "workspace"), help="where model.pt and model.onnx go (default %(default)s)")
    p.add_argument(
        "--weights",
        choices=["auto", "pretrained", "random"],
        default="auto",
        help="pretrained downloads torchvision's weights; random needs no network; auto tries pretrained (default)",
    )
    p.add_argument(
        "--any-torch",
        action="store_true",
        help=f"export with whatever torch is installed, not only {RELEASE['torch']}.x (the file may not load in Triton {RELEASE['tritonRelease']}; the emulator does not care)",
    )
    args = p.parse_args()
    global torchvision
    import_torch()
    check_torch(args.any_torch)
    torchvision = import_torchvision()
    os.makedirs(args.out, exist_ok=True)

    model, source = build(args.weights)
    model.eval()
    example = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        expected = model(example)
        traced = torch.jit.trace(model, example)
        pt_path = os.path.join(args.out, "model.pt")
        traced.save(pt_path)
        onnx_path = os.path.join(args.out, "model.onnx")
        export_onnx(model, example, onnx_path)

        # Checks: the saved TorchScript reloads and agrees; ONNX agrees on a batch of 2 (dynamic batch).
        reloaded = torch.jit.load(pt_path)
        pt_diff = (reloaded(example) - expected).abs().max().item()
        report = {
            "weights": source,
            "model.pt": os.path.getsize(pt_path),
            "model.onnx": os.path.getsize(onnx_path),
            "torchscript_max_abs_diff": pt_diff,
        }
        try:
            import numpy as np
            import onnxruntime as ort

            batch = torch.randn(2, 3, 224, 224)
            sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
            (out,) = sess.run(["output"], {"input": batch.numpy()})
            report["onnx_max_abs_diff"] = float(np.abs(out - model(batch).numpy()).max())
        except ImportError:
            report["onnx_max_abs_diff"] = "onnxruntime not installed: not checked"
    print(json.dumps(report, indent=2))
    if pt_diff > 1e-3 or (isinstance(report["onnx_max_abs_diff"], float) and report["onnx_max_abs_diff"] > 1e-2):
        print("exported models disagree with the eager model", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
