#!/usr/bin/env python3
"""Classify a photo with both of the launch post's ResNet-50 artifacts, as the post invokes them.

Preprocesses the image with Pillow (resize to 256, centre crop 224, ImageNet mean/std, CHW FP32), then
calls SageMaker Runtime's InvokeEndpoint with TargetModel set to each artifact, once with a KServe v2
JSON body sent as application/octet-stream (the post's way) and once with the binary+json extension
(raw FP32 bytes after a JSON header), and prints the top-5 ImageNet classes of each answer.

    # a local agent (npm run demo, docker compose, or the image on a GPU host):
    python3 examples/invoke_resnet.py --endpoint-url http://localhost:8080 --image cat.jpg
    # a real SageMaker endpoint (credentials and region from boto3's chain):
    python3 examples/invoke_resnet.py --endpoint-name resnet-mme --image cat.jpg

    --save-request DIR writes the request bodies for curl (see examples/curl.sh) and exits.

Needs boto3 and Pillow (pip install boto3 pillow); no numpy. With random export weights
(triton-models/export_resnet50.py without internet) the classes are meaningless; with the Triton
emulator the scores come from its documented stand-in function, not from ResNet-50.
"""
import argparse
import array
import json
import math
import os
import sys

# The launch post's two configs: PyTorch names its tensors INPUT__0/OUTPUT__0, the ONNX->TensorRT
# export input/output (triton-models/resnet_*/resnet/config.pbtxt).
TENSORS = {
    "resnet_pt_v0.tar.gz": ("INPUT__0", "OUTPUT__0"),
    "resnet_trt_v0.tar.gz": ("input", "output"),
}
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BINARY_JSON = "application/vnd.sagemaker-triton.binary+json;json-header-size="


def preprocess(path):
    """ImageNet preprocessing as torchvision does it, returned as 3*224*224 FP32 values in CHW order."""
    from PIL import Image

    img = Image.open(path).convert("RGB")
    w, h = img.size
    # torchvision's Resize(256): the short side to 256, the long side scaled and truncated.
    size = (256, int(256 * h / w)) if w <= h else (int(256 * w / h), 256)
    img = img.resize(size, Image.BILINEAR)
    w, h = img.size
    # torchvision's CenterCrop(224).
    left, top = int(round((w - 224) / 2.0)), int(round((h - 224) / 2.0))
    img = img.crop((left, top, left + 224, top + 224))
    pixels = img.tobytes()  # HWC, uint8
    chw = array.array("f", bytes(4 * 3 * 224 * 224))
    for c in range(3):
        base = c * 224 * 224
        m, s = MEAN[c], STD[c]
        for i in range(224 * 224):
            chw[base + i] = (pixels[3 * i + c] / 255.0 - m) / s
    return chw


def json_request(values, input_name):
    return json.dumps(
        {"inputs": [{"name": input_name, "shape": [1, 3, 224, 224], "datatype": "FP32", "data": values.tolist()}]}
    ).encode()


def binary_request(values, input_name, output_name):
    raw = values.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": input_name,
                    "shape": [1, 3, 224, 224],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": output_name, "parameters": {"binary_data": True}}],
        }
    ).encode()
    return header + raw, BINARY_JSON + str(len(header))


def scores_of(body, content_type):
    """The 1000 scores of the first output, from a JSON or a binary+json answer."""
    if content_type.startswith(BINARY_JSON.split(";")[0]):
        size = int(content_type.split("json-header-size=")[1].split(";")[0])
        header = json.loads(body[:size])
        out = header["outputs"][0]
        n = out["parameters"]["binary_data_size"]
        scores = array.array("f")
        scores.frombytes(body[size : size + n])
        if sys.byteorder != "little":
            scores.byteswap()
        return list(scores)
    return json.loads(body)["outputs"][0]["data"]


def top5(scores, labels):
    peak = max(scores)
    exp = [math.exp(s - peak) for s in scores]
    total = sum(exp)
    best = sorted(range(len(scores)), key=lambda i: scores[i], reverse=True)[:5]
    return [(labels[i] if i < len(labels) else str(i), exp[i] / total) for i in best]


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="a JPEG or PNG photo")
    p.add_argument("--endpoint-name", default="local", help="SageMaker endpoint (any name for a local agent)")
    p.add_argument("--endpoint-url", help="a local agent, e.g. http://localhost:8080 (omit for SageMaker)")
    p.add_argument("--region", default=os.environ.get("AWS_REGION", "us-east-1"))
    p.add_argument("--models", nargs="+", default=list(TENSORS), help="TargetModel names (default: both artifacts)")
    p.add_argument("--format", choices=["json", "binary", "both"], default="both")
    p.add_argument("--labels", default=os.path.join(here, "imagenet_classes.txt"))
    p.add_argument("--save-request", metavar="DIR", help="write request bodies for curl and exit")
    args = p.parse_args(argv)

    values = preprocess(args.image)
    if args.save_request:
        os.makedirs(args.save_request, exist_ok=True)
        for model in args.models:
            inp, out = TENSORS.get(model, TENSORS["resnet_pt_v0.tar.gz"])
            stem = model.split(".")[0]
            with open(os.path.join(args.save_request, f"{stem}.json"), "wb") as f:
                f.write(json_request(values, inp))
            body, content_type = binary_request(values, inp, out)
            with open(os.path.join(args.save_request, f"{stem}.bin"), "wb") as f:
                f.write(body)
            with open(os.path.join(args.save_request, f"{stem}.content-type"), "w") as f:
                f.write(content_type)
            print(f"wrote {stem}.json, {stem}.bin and {stem}.content-type in {args.save_request}")
        return 0

    import boto3

    session = boto3.session.Session(region_name=args.region)
    if args.endpoint_url and session.get_credentials() is None:
        # A local agent does not check signatures, but boto3 signs every request: any key will do.
        session = boto3.session.Session(
            region_name=args.region, aws_access_key_id="local", aws_secret_access_key="local"
        )
    client = session.client("sagemaker-runtime", endpoint_url=args.endpoint_url)
    with open(args.labels) as f:
        labels = [line.strip() for line in f]
    formats = ["json", "binary"] if args.format == "both" else [args.format]
    for model in args.models:
        inp, out = TENSORS.get(model, TENSORS["resnet_pt_v0.tar.gz"])
        for fmt in formats:
            if fmt == "json":
                body, content_type = json_request(values, inp), "application/octet-stream"
            else:
                body, content_type = binary_request(values, inp, out)
            r = client.invoke_endpoint(
                EndpointName=args.endpoint_name, ContentType=content_type, Body=body, TargetModel=model
            )
            scores = scores_of(r["Body"].read(), r["ContentType"])
            print(f"{model} ({fmt}):")
            for label, prob in top5(scores, labels):
                print(f"  {prob:7.2%}  {label}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
