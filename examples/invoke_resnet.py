#!/usr/bin/env python3
"""Classify a photo with the launch post's ResNet-50 artifacts, as the post invokes them.

Preprocesses the image with Pillow (resize to 256, centre crop 224, ImageNet mean/std, CHW FP32), then
calls SageMaker Runtime's InvokeEndpoint with TargetModel set to each artifact, once with a KServe v2
JSON body sent as application/octet-stream (the post's way) and once with the binary+json extension
(raw FP32 bytes after a JSON header), and prints the top-5 ImageNet classes of each answer.

    # a local agent (npm run demo, docker compose, or the image on a GPU host); no AWS account needed:
    python3 examples/invoke_resnet.py --endpoint-url http://localhost:8080 --image cat.jpg
    # a real SageMaker endpoint (credentials and region from boto3's chain, or --region):
    python3 examples/invoke_resnet.py --endpoint-name resnet-mme --image cat.jpg

Which artifacts: --models names them; by default resnet_pt_v0.tar.gz, plus resnet_trt_v0.tar.gz when
triton-models/pack.sh packed a TensorRT plan into --dist (it skips it without a GPU). A local agent
ignores request signatures, but boto3 signs every request: with --endpoint-url and no credentials
configured, this client signs with dummy ones (as if AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local).

    --save-request DIR writes the request bodies for curl (see examples/curl.sh) and exits.

Exit status: 0 every model answered, 1 a call failed (each failure is one line naming the fix; the
other models are still asked), 2 bad arguments, no region or no credentials (nothing was called).
--debug adds the traceback.

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
from urllib.parse import urlparse

HERE = os.path.dirname(os.path.abspath(__file__))
PT = "resnet_pt_v0.tar.gz"
TRT = "resnet_trt_v0.tar.gz"
ARTIFACTS = (PT, TRT)
# Where triton-models/pack.sh writes the artifacts by default.
DIST = os.path.normpath(os.path.join(HERE, "..", "triton-models", "dist"))
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
BINARY_JSON = "application/vnd.sagemaker-triton.binary+json;json-header-size="
TRT_NOTE = "the TensorRT artifact exists only where triton-models/build_trt_plan.sh ran on a GPU and only loads on one"


def tensors_for(model):
    """Input and output tensor names: the launch post's two configs name them differently, PyTorch
    INPUT__0/OUTPUT__0 and the ONNX->TensorRT export input/output (triton-models/resnet_*/resnet/config.pbtxt).
    A TargetModel whose file name mentions 'trt' is taken for the TensorRT one."""
    return ("input", "output") if "trt" in os.path.basename(model).lower() else ("INPUT__0", "OUTPUT__0")


def default_models(dist):
    """The PyTorch artifact, plus the TensorRT one when pack.sh packed it (it skips it without a GPU)."""
    return [PT, TRT] if os.path.isfile(os.path.join(dist, TRT)) else [PT]


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


class Refused(Exception):
    """A problem found before any call (arguments, image, region, credentials): one line, exit 2."""


class Fatal(Exception):
    """A failure every further call would repeat (credentials, region, endpoint, network): stop, exit 1."""


CREDENTIALS_FIX = "run `aws configure`, set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
REGION_FIX = "pass --region, or set AWS_REGION or AWS_DEFAULT_REGION (e.g. AWS_REGION=us-east-1)"
# Codes AWS answers when it does not accept the credentials themselves (unknown key, bad secret, expired).
REFUSED_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
}
# How a missing TargetModel is answered: the agent without MODEL_DATA_URL, the agent with it, SageMaker.
MODEL_MISSING = ("is not loaded", "artifact not found", "Failed to download model data")


def _one_line(text):
    return " ".join(str(text).split())


def is_aws(url):
    host = (urlparse(url).hostname or "").lower()
    return host.endswith(".amazonaws.com") or host.endswith(".amazonaws.com.cn") or host.endswith(".api.aws")


class Target:
    """Where the requests go: a local agent (--endpoint-url) or a SageMaker endpoint in a region."""

    def __init__(self, url, name, region):
        self.url, self.name, self.region = url, name, region
        self.local = bool(url) and not is_aws(url)

    def explain(self, err, model):
        """One line naming what went wrong and the fix; raises Fatal when every further call would fail too."""
        from botocore import exceptions as bx

        if isinstance(err, bx.NoCredentialsError):
            raise Fatal(f"no AWS credentials found: {CREDENTIALS_FIX}")
        if isinstance(err, (bx.PartialCredentialsError, bx.CredentialRetrievalError, bx.TokenRetrievalError, bx.SSOError)):
            raise Fatal(f"could not get AWS credentials ({_one_line(err)}): {CREDENTIALS_FIX}")
        if isinstance(err, bx.ReadTimeoutError):
            return f"{model}: no answer in time ({_one_line(err)}); a cold load of a large model can take longer: run again"
        if isinstance(err, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ConnectionClosedError)):
            if self.local:
                raise Fatal(
                    f"nothing answers at {self.url}: start the agent (npm start, npm run demo or docker compose up) "
                    "or fix --endpoint-url"
                )
            raise Fatal(f"could not reach SageMaker Runtime ({_one_line(err)}): check the network and --region ({self.region})")
        if not isinstance(err, bx.ClientError):
            return None
        code = err.response.get("Error", {}).get("Code", "")
        message = _one_line(err.response.get("Error", {}).get("Message", ""))
        said = f"{code}: {message}" if message else code
        if code in REFUSED_CREDENTIALS:
            raise Fatal(f"AWS does not accept these credentials ({said}): {CREDENTIALS_FIX}, or refresh a session token")
        if code in ("AccessDeniedException", "AccessDenied"):
            raise Fatal(f"not allowed to invoke {self.name} ({said}): the credentials need sagemaker:InvokeEndpoint on it")
        if code == "ValidationError" and "Endpoint " in message and " not found" in message:
            raise Fatal(
                f"no endpoint '{self.name}' in {self.region} ({said}): check --endpoint-name and --region "
                f"(aws sagemaker list-endpoints --region {self.region})"
            )
        trt = f"; {TRT_NOTE}" if "trt" in model.lower() else ""
        if code == "ValidationError" and any(m in message for m in MODEL_MISSING):
            if "is not loaded" in message:  # an agent without MODEL_DATA_URL serves only what was loaded
                fix = "load it first (POST /models) or start the agent with MODEL_DATA_URL set to the prefix that holds it"
            elif self.local:
                fix = "put it under the agent's MODEL_DATA_URL (triton-models/upload.py for S3)"
            else:
                fix = "upload it under the endpoint's ModelDataUrl (triton-models/upload.py)"
            fix += ", or pick another with --models"
            return f"{model}: no such model at the endpoint ({said}): {fix}{trt}"
        if code == "ModelError":
            return f"{model}: the model failed ({said}){trt}"
        if code == "ModelNotReadyException":
            return f"{model}: still loading ({said}): run again in a moment"
        return f"{model}: the endpoint refused the request ({said})"


def make_client(args):
    """A SageMaker Runtime client for --endpoint-url or the SageMaker endpoint, or Refused with the fix."""
    try:
        import boto3
        from botocore import exceptions as bx
    except ImportError:
        raise Refused("boto3 is not installed: pip install boto3")
    if args.endpoint_url and not urlparse(args.endpoint_url).hostname:
        raise Refused(f"--endpoint-url '{args.endpoint_url}' is not a URL (e.g. http://localhost:8080)")
    local = bool(args.endpoint_url) and not is_aws(args.endpoint_url)
    if not local and not args.endpoint_name:
        raise Refused(
            "which endpoint? --endpoint-name NAME for a SageMaker endpoint, or --endpoint-url http://localhost:8080 for a local agent"
        )
    try:
        # boto3 alone does not read AWS_REGION (only AWS_DEFAULT_REGION and the profile); SageMaker sets it.
        session = boto3.session.Session(region_name=args.region or os.environ.get("AWS_REGION") or None)
        region = session.region_name
        if not region:
            if not local:
                raise Refused(f"no AWS region: {REGION_FIX}")
            region = "us-east-1"  # any region: a local agent does not look at it
        try:
            credentials = session.get_credentials()
        except (bx.PartialCredentialsError, bx.CredentialRetrievalError, bx.TokenRetrievalError, bx.SSOError) as e:
            if not local:
                raise Refused(f"could not get AWS credentials ({_one_line(e)}): {CREDENTIALS_FIX}") from e
            credentials = None
        if credentials is None:
            if not local:
                raise Refused(f"no AWS credentials found: {CREDENTIALS_FIX}")
            # A local agent does not check signatures, but boto3 signs every request: any key will do.
            session = boto3.session.Session(region_name=region, aws_access_key_id="local", aws_secret_access_key="local")
        client = session.client("sagemaker-runtime", region_name=region, endpoint_url=args.endpoint_url)
    except bx.ProfileNotFound as e:
        raise Refused(f"{_one_line(e)}: fix AWS_PROFILE (see `aws configure list-profiles`) or unset it") from e
    except bx.InvalidRegionError as e:
        raise Refused(f"{_one_line(e)}: {REGION_FIX}") from e
    return client, Target(args.endpoint_url, args.endpoint_name or "local", region)


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--image", required=True, help="a JPEG or PNG photo (required)")
    p.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="send InvokeEndpoint to a local agent at URL instead of SageMaker, e.g. http://localhost:8080 "
        "(npm start, npm run demo, docker compose up, or the image). No AWS account needed: boto3 signs every request "
        "and the agent ignores the signature, so when no credentials are configured this client uses dummy ones, as if "
        "AWS_ACCESS_KEY_ID=local AWS_SECRET_ACCESS_KEY=local (your own boto3 code needs those set to anything). "
        "Default: none, call SageMaker",
    )
    p.add_argument(
        "--endpoint-name",
        metavar="NAME",
        help="the SageMaker endpoint (required without --endpoint-url; a local agent takes any name, default 'local')",
    )
    p.add_argument(
        "--region",
        help="AWS region of the endpoint (default: AWS_REGION, else AWS_DEFAULT_REGION, else the AWS profile's; "
        "us-east-1 for a local agent)",
    )
    p.add_argument(
        "--models",
        nargs="+",
        metavar="TARGET_MODEL",
        help=f"TargetModel names, each an artifact's path under the endpoint's S3 prefix (default: {PT}, plus {TRT} "
        f"when --dist holds it; with --save-request both)",
    )
    p.add_argument(
        "--dist",
        default=DIST,
        metavar="DIR",
        help="where triton-models/pack.sh wrote the artifacts, to tell whether a TensorRT plan was packed "
        "(default: triton-models/dist)",
    )
    p.add_argument("--format", choices=["json", "binary", "both"], default="both", help="request encoding (default %(default)s)")
    p.add_argument("--labels", default=os.path.join(HERE, "imagenet_classes.txt"), help="class names, one a line (default: examples/imagenet_classes.txt)")
    p.add_argument("--save-request", metavar="DIR", help="write the request bodies for curl into DIR and exit (default: off)")
    p.add_argument("--debug", action="store_true", help="on a failure, print the full traceback too (default: off)")
    return p.parse_args(argv)


def read_image(path):
    try:
        from PIL import UnidentifiedImageError
    except ImportError:
        raise Refused("Pillow is not installed: pip install pillow")
    try:
        return preprocess(path)
    except (OSError, UnidentifiedImageError) as e:
        raise Refused(f"cannot read --image {path}: {_one_line(e)}") from e


def save_requests(values, models, folder, out):
    os.makedirs(folder, exist_ok=True)
    for model in models:
        inp, outp = tensors_for(model)
        stem = os.path.basename(model).split(".")[0]
        with open(os.path.join(folder, f"{stem}.json"), "wb") as f:
            f.write(json_request(values, inp))
        body, content_type = binary_request(values, inp, outp)
        with open(os.path.join(folder, f"{stem}.bin"), "wb") as f:
            f.write(body)
        with open(os.path.join(folder, f"{stem}.content-type"), "w") as f:
            f.write(content_type)
        out(f"wrote {stem}.json, {stem}.bin and {stem}.content-type in {folder}")


def main(argv=None, out=print, err=lambda m: print(m, file=sys.stderr)):
    args = parse_args(argv)
    try:
        if args.save_request:
            save_requests(read_image(args.image), args.models or list(ARTIFACTS), args.save_request, out)
            return 0
        client, target = make_client(args)
        values = read_image(args.image)
        try:
            with open(args.labels) as f:
                labels = [line.strip() for line in f]
        except OSError as e:
            raise Refused(f"cannot read --labels: {_one_line(e)}") from e
    except Refused as e:
        if args.debug:
            raise
        err(f"invoke_resnet: {e}")
        return 2
    models = args.models
    if not models:
        models = default_models(args.dist)
        if TRT not in models:
            shown = "triton-models/dist" if args.dist == DIST else args.dist
            err(f"invoke_resnet: asking for {PT} only: no TensorRT artifact packed in {shown}; --models {PT} {TRT} asks for both")

    formats = ["json", "binary"] if args.format == "both" else [args.format]
    failed = 0
    for model in models:
        inp, outp = tensors_for(model)
        for fmt in formats:
            if fmt == "json":
                body, content_type = json_request(values, inp), "application/octet-stream"
            else:
                body, content_type = binary_request(values, inp, outp)
            try:
                r = client.invoke_endpoint(
                    EndpointName=target.name, ContentType=content_type, Body=body, TargetModel=model
                )
                scores = scores_of(r["Body"].read(), r["ContentType"])
            except Exception as e:
                if args.debug:
                    raise
                try:
                    line = target.explain(e, model) or f"{model}: {type(e).__name__}: {_one_line(e)} (--debug shows the traceback)"
                except Fatal as fatal:
                    err(f"invoke_resnet: {fatal}")
                    return 1
                err(f"invoke_resnet: {line}")
                failed += 1
                break  # the other format would fail the same way
            out(f"{model} ({fmt}):")
            for label, prob in top5(scores, labels):
                out(f"  {prob:7.2%}  {label}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
