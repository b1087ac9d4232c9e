#!/usr/bin/env python3
"""Deploy the agent's image as a SageMaker multi-model endpoint on GPU, with auto-scaling.

Pushes nothing: the image must already be in ECR and the artifacts under one S3 prefix. Creates, in order,
the model (Mode: MultiModel, ModelDataUrl = the prefix), an endpoint config on a GPU instance type, the
endpoint, and once it is InService the auto-scaling of its variant: a target-tracking policy on
GPUUtilization (the launch post's choice) or InvocationsPerInstance.

    python3 deploy/sagemaker/deploy_endpoint.py \\
        --name resnet-mme \\
        --image 123456789012.dkr.ecr.us-east-1.amazonaws.com/triton-sagemaker-mme-agent:0.1.0 \\
        --model-data-url s3://my-bucket/resnet-mme-gpu/ \\
        --role-arn arn:aws:iam::123456789012:role/SageMakerExecutionRole

    --dry-run prints every request as JSON and calls nothing.
    --delete --name resnet-mme removes the scaling policy, endpoint, endpoint config and model.

If a step fails, what this run created is deleted again (newest first), so a failed deployment leaves
nothing behind; an endpoint SageMaker could not start is reported with SageMaker's own failure reason (for
example an image it refused). Exit status: 0 done, 1 an AWS call failed, 2 bad arguments or no region or
credentials (nothing was called). Failures are one line naming the fix; --debug adds the traceback.
Credentials come from boto3's standard chain (AWS_PROFILE, AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, `aws
configure`, an instance role); the region from --region, else AWS_REGION, else AWS_DEFAULT_REGION, else
the profile's region.

The endpoint runs on the SageMaker inference AMI whose NVIDIA driver runs the image's Triton release
(deploy/triton-release.json: --inference-ami-version).
"""
import argparse
import json
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "..", "triton-release.json")) as _f:
    RELEASE = json.load(_f)

METRIC_NAMESPACE = "/aws/sagemaker/Endpoints"
VARIANT = "AllTraffic"
SCALABLE_DIMENSION = "sagemaker:variant:DesiredInstanceCount"


class UsageError(Exception):
    """A bad argument: reported before any AWS call."""


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True, help="endpoint name; also names the model and endpoint config (required)")
    p.add_argument("--image", help="ECR image URI of this project's image (required, except with --delete)")
    p.add_argument(
        "--model-data-url",
        help="S3 prefix ending in '/' holding the .tar.gz artifacts; TargetModel is relative to it (required, except with --delete)",
    )
    p.add_argument(
        "--role-arn",
        help="SageMaker execution role: reads the S3 prefix, pulls the image (required, except with --delete)",
    )
    p.add_argument(
        "--instance-type",
        default="ml.g4dn.4xlarge",
        help="GPU instance type (ml.g*/ml.p*), one GPU or several: on a multi-GPU type such as ml.g5.12xlarge "
        "the agent places models across all its GPUs; default %(default)s",
    )
    p.add_argument("--instance-count", type=int, default=2, help="initial instances (default %(default)s, as the post recommends)")
    p.add_argument("--min-capacity", type=int, default=1, help="fewest instances auto-scaling keeps (default %(default)s)")
    p.add_argument("--max-capacity", type=int, default=5, help="most instances auto-scaling adds (default %(default)s)")
    p.add_argument("--metric", choices=["GPUUtilization", "InvocationsPerInstance"], default="GPUUtilization", help="what auto-scaling tracks (default %(default)s)")
    p.add_argument("--target", type=float, help="target value: GPUUtilization percent (default 60) or invocations per instance per minute (default 100)")
    p.add_argument("--scale-in-cooldown", type=int, default=600, help="seconds between scale-in steps (default %(default)s)")
    p.add_argument("--scale-out-cooldown", type=int, default=200, help="seconds between scale-out steps (default %(default)s)")
    p.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="container environment, repeatable, e.g. LOG_LEVEL=debug (default: none, the agent's defaults)",
    )
    p.add_argument(
        "--inference-ami-version",
        default=RELEASE["inferenceAmiVersion"],
        help=f"SageMaker inference AMI, whose NVIDIA driver must run Triton {RELEASE['tritonRelease']} "
        f"(default %(default)s: {RELEASE['inferenceAmiDriver']})",
    )
    p.add_argument(
        "--region",
        help="AWS region (default: AWS_REGION, else AWS_DEFAULT_REGION, else the AWS profile's region)",
    )
    p.add_argument("--dry-run", action="store_true", help="print every request as JSON and call nothing (default: off)")
    p.add_argument(
        "--delete", action="store_true", help="remove the endpoint --name and what this script created for it (default: off)"
    )
    p.add_argument("--debug", action="store_true", help="on a failure, print the full traceback too (default: off)")
    return p.parse_args(argv)


def _check(cond, message):
    if not cond:
        raise UsageError(message)


def plan(args):
    """Every request of a deployment, as (client, operation, parameters), in order. Pure: no AWS calls."""
    name = args.name
    _check(re.fullmatch(r"[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", name), f"--name '{name}': 1-63 letters, digits and hyphens")
    _check(args.image, "--image is required")
    _check(
        re.fullmatch(r"\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+(:[\w.-]+|@sha256:[0-9a-f]{64})", args.image),
        f"--image '{args.image}' is not an ECR image URI (<account>.dkr.ecr.<region>.amazonaws.com/<repository>:<tag>)",
    )
    _check(args.model_data_url, "--model-data-url is required")
    _check(
        re.fullmatch(r"s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/(.+/)?", args.model_data_url),
        f"--model-data-url '{args.model_data_url}' must be an S3 prefix ending in '/', e.g. s3://bucket/resnet-mme-gpu/",
    )
    _check(args.role_arn, "--role-arn is required")
    _check(
        re.fullmatch(r"arn:aws[a-z-]*:iam::\d{12}:role/[\w+=,.@/-]+", args.role_arn),
        f"--role-arn '{args.role_arn}' is not an IAM role ARN",
    )
    _check(
        re.fullmatch(r"ml\.(g|p)\d+[a-z]*\.\w+", args.instance_type),
        f"--instance-type '{args.instance_type}': multi-model endpoints on GPU need a GPU instance type (ml.g*/ml.p*)",
    )
    _check(args.instance_count >= 1, "--instance-count must be at least 1")
    _check(1 <= args.min_capacity <= args.max_capacity, "need 1 <= --min-capacity <= --max-capacity")
    _check(
        args.min_capacity <= args.instance_count <= args.max_capacity,
        "--instance-count must lie between --min-capacity and --max-capacity",
    )
    env = {}
    for kv in args.env:
        key, sep, value = kv.partition("=")
        _check(sep and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key), f"--env '{kv}': expected KEY=VALUE")
        env[key] = value

    container = {"Image": args.image, "ModelDataUrl": args.model_data_url, "Mode": "MultiModel"}
    if env:
        container["Environment"] = env
    resource_id = f"endpoint/{name}/variant/{VARIANT}"
    if args.metric == "GPUUtilization":
        tracking = {
            "TargetValue": args.target if args.target is not None else 60.0,
            "CustomizedMetricSpecification": {
                "MetricName": "GPUUtilization",
                "Namespace": METRIC_NAMESPACE,
                "Dimensions": [
                    {"Name": "EndpointName", "Value": name},
                    {"Name": "VariantName", "Value": VARIANT},
                ],
                "Statistic": "Average",
                "Unit": "Percent",
            },
        }
    else:
        tracking = {
            "TargetValue": args.target if args.target is not None else 100.0,
            "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        }
    tracking["ScaleInCooldown"] = args.scale_in_cooldown
    tracking["ScaleOutCooldown"] = args.scale_out_cooldown
    _check(tracking["TargetValue"] > 0, "--target must be positive")

    return [
        ("sagemaker", "create_model", {"ModelName": name, "ExecutionRoleArn": args.role_arn, "PrimaryContainer": container}),
        (
            "sagemaker",
            "create_endpoint_config",
            {
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": VARIANT,
                        "ModelName": name,
                        "InstanceType": args.instance_type,
                        "InitialInstanceCount": args.instance_count,
                        "InitialVariantWeight": 1,
                        "InferenceAmiVersion": args.inference_ami_version,
                    }
                ],
            },
        ),
        ("sagemaker", "create_endpoint", {"EndpointName": name, "EndpointConfigName": name}),
        ("wait", "endpoint_in_service", {"EndpointName": name}),
        (
            "application-autoscaling",
            "register_scalable_target",
            {
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": SCALABLE_DIMENSION,
                "MinCapacity": args.min_capacity,
                "MaxCapacity": args.max_capacity,
            },
        ),
        (
            "application-autoscaling",
            "put_scaling_policy",
            {
                "PolicyName": f"{name}-{args.metric}",
                "ServiceNamespace": "sagemaker",
                "ResourceId": resource_id,
                "ScalableDimension": SCALABLE_DIMENSION,
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": tracking,
            },
        ),
    ]


class EndpointFailed(Exception):
    """SageMaker could not bring the endpoint into service; carries SageMaker's own reason."""

    def __init__(self, name, reason, cause):
        super().__init__(
            f"endpoint {name} did not start: {reason}"
            if reason
            else f"endpoint {name} did not start ({type(cause).__name__}: {str(cause).splitlines()[0] if str(cause) else 'no detail'})"
        )


def failure_reason(sagemaker, name):
    """SageMaker's FailureReason for an endpoint that failed (e.g. an image it refused), if it gives one."""
    try:
        return sagemaker.describe_endpoint(EndpointName=name).get("FailureReason")
    except Exception:
        return None


# What undoes each creating call (the deployment's own resources only).
UNDO = {
    "create_model": ("sagemaker", "delete_model", lambda p: {"ModelName": p["ModelName"]}),
    "create_endpoint_config": ("sagemaker", "delete_endpoint_config", lambda p: {"EndpointConfigName": p["EndpointConfigName"]}),
    "create_endpoint": ("sagemaker", "delete_endpoint", lambda p: {"EndpointName": p["EndpointName"]}),
    "register_scalable_target": (
        "application-autoscaling",
        "deregister_scalable_target",
        lambda p: {k: p[k] for k in ("ServiceNamespace", "ResourceId", "ScalableDimension")},
    ),
}


def run(steps, clients, out=print, waiter_config=None):
    """Carries out `steps`; on a failure undoes what this run created, newest first, then re-raises."""
    done = []
    try:
        for client, op, params in steps:
            if client == "wait":
                out(f"waiting for {params['EndpointName']} to be InService (several minutes)")
                try:
                    clients["sagemaker"].get_waiter(op).wait(**params, WaiterConfig=waiter_config or {"Delay": 30, "MaxAttempts": 120})
                except Exception as err:
                    raise EndpointFailed(params["EndpointName"], failure_reason(clients["sagemaker"], params["EndpointName"]), err) from err
                continue
            getattr(clients[client], op)(**params)
            out(f"{op}: done")
            done.append((op, params))
    except Exception:
        for op, params in reversed(done):
            if op not in UNDO:
                continue
            client, undo_op, undo_params = UNDO[op]
            try:
                getattr(clients[client], undo_op)(**undo_params(params))
                out(f"rolled back: {undo_op}")
            except Exception as err:  # keep undoing the rest; say what is left
                out(f"could not roll back {op}: {explain(err) or _one_line(err)}")
        raise


def teardown_plan(name, metric_names=("GPUUtilization", "InvocationsPerInstance")):
    """Requests that remove a deployment made by this script (missing pieces are skipped)."""
    resource_id = f"endpoint/{name}/variant/{VARIANT}"
    steps = [
        (
            "application-autoscaling",
            "delete_scaling_policy",
            {"PolicyName": f"{name}-{m}", "ServiceNamespace": "sagemaker", "ResourceId": resource_id, "ScalableDimension": SCALABLE_DIMENSION},
        )
        for m in metric_names
    ]
    steps.append(
        (
            "application-autoscaling",
            "deregister_scalable_target",
            {"ServiceNamespace": "sagemaker", "ResourceId": resource_id, "ScalableDimension": SCALABLE_DIMENSION},
        )
    )
    steps += [
        ("sagemaker", "delete_endpoint", {"EndpointName": name}),
        ("sagemaker", "delete_endpoint_config", {"EndpointConfigName": name}),
        ("sagemaker", "delete_model", {"ModelName": name}),
    ]
    return steps


def teardown(steps, clients, out=print):
    from botocore.exceptions import ClientError

    for client, op, params in steps:
        try:
            getattr(clients[client], op)(**params)
            out(f"{op}: done")
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in ("ValidationException", "ObjectNotFoundException", "ResourceNotFound"):
                out(f"{op}: nothing to delete ({code})")
            else:
                raise


class SetupError(Exception):
    """No region or no credentials: said in one line, with the fix."""


REGION_FIX = "pass --region, or set AWS_REGION or AWS_DEFAULT_REGION (e.g. AWS_REGION=us-east-1)"
CREDENTIALS_FIX = "run `aws configure`, set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
# Codes AWS answers when it does not accept the credentials themselves (unknown key, bad secret, expired).
REFUSED_CREDENTIALS = {
    "UnrecognizedClientException",
    "InvalidClientTokenId",
    "InvalidSignatureException",
    "SignatureDoesNotMatch",
    "ExpiredTokenException",
    "ExpiredToken",
    "InvalidAccessKeyId",
}


def _one_line(text):
    return " ".join(str(text).split())


def explain(err):
    """One line saying what went wrong and how to fix it, for the errors a user meets; None for the rest.

    Why here and not at each call: botocore raises the same few exceptions from every call (credentials and
    region are resolved lazily, at the first request), so one table covers setup, the run and the rollback.
    """
    from botocore import exceptions as bx

    if isinstance(err, bx.NoCredentialsError):
        return f"no AWS credentials found: {CREDENTIALS_FIX}"
    if isinstance(err, bx.PartialCredentialsError):
        return f"incomplete AWS credentials ({_one_line(err)}): set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or use a profile"
    if isinstance(err, bx.ProfileNotFound):
        return f"{_one_line(err)}: fix AWS_PROFILE (see `aws configure list-profiles`) or unset it"
    if isinstance(err, (bx.SSOTokenLoadError, bx.UnauthorizedSSOTokenError, bx.TokenRetrievalError)):
        return f"the AWS SSO session is missing or expired ({_one_line(err)}): run `aws sso login`"
    if isinstance(err, bx.CredentialRetrievalError):
        return f"could not get AWS credentials ({_one_line(err)}): {CREDENTIALS_FIX}"
    if isinstance(err, bx.NoRegionError):
        return f"no AWS region: {REGION_FIX}"
    if isinstance(err, bx.InvalidRegionError):
        return f"{_one_line(err)}: {REGION_FIX}"
    if isinstance(err, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError)):
        return f"could not reach AWS ({_one_line(err)}): check the network, the region, and any AWS_ENDPOINT_URL* setting"
    if isinstance(err, bx.ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        said = f"{err.operation_name} refused ({code}: {_one_line(err.response.get('Error', {}).get('Message', ''))})"
        if code in REFUSED_CREDENTIALS:
            return f"{said}: AWS does not accept these credentials; {CREDENTIALS_FIX}, or refresh a session token"
        if code in ("AccessDeniedException", "AccessDenied"):
            return (
                f"{said}: the credentials need sagemaker:CreateModel/CreateEndpointConfig/CreateEndpoint/Describe*/Delete*, "
                "iam:PassRole on --role-arn and application-autoscaling:* (docs/deploying.md)"
            )
        if code == "ValidationException" and "already exist" in said:
            return f"{said}: pick another --name, or remove the old one with --delete --name <name>"
        return said
    return None


def make_clients(region):
    """Clients for one region, or a SetupError (one line, with the fix) when the region or the credentials
    cannot be found. boto3 alone does not read AWS_REGION (only AWS_DEFAULT_REGION and the profile), so it
    is passed on here: the docs' `docker run` and SageMaker itself use AWS_REGION."""
    try:
        import boto3
    except ImportError:
        raise SetupError("boto3 is not installed: pip install boto3")

    try:
        session = boto3.session.Session(region_name=region or os.environ.get("AWS_REGION") or None)
        if not session.region_name:
            raise SetupError(f"no AWS region: {REGION_FIX}")
        if session.get_credentials() is None:
            raise SetupError(f"no AWS credentials found: {CREDENTIALS_FIX}")
        return {"sagemaker": session.client("sagemaker"), "application-autoscaling": session.client("application-autoscaling")}
    except SetupError:
        raise
    except Exception as e:
        hint = explain(e)
        if hint is None:
            raise
        raise SetupError(hint) from e


def describe(e):
    """A failure as one line: the hint when there is one, else the exception's own words."""
    hint = explain(e)
    if hint:
        return hint
    text = _one_line(e)
    return text if isinstance(e, EndpointFailed) else f"{type(e).__name__}: {text} (--debug shows the traceback)"


def main(argv=None, clients=None, out=print, err=lambda m: print(m, file=sys.stderr), waiter_config=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        steps = teardown_plan(args.name) if args.delete else plan(args)
    except UsageError as e:
        err(f"deploy_endpoint: {e}")
        return 2
    if args.dry_run:
        out(json.dumps([{"client": c, "operation": o, "params": p} for c, o, p in steps], indent=2))
        return 0
    try:
        clients = clients or make_clients(args.region)
    except SetupError as e:
        if args.debug:
            raise
        err(f"deploy_endpoint: {e}")
        return 2
    try:
        if args.delete:
            teardown(steps, clients, out)
        else:
            run(steps, clients, out, waiter_config)
    except Exception as e:
        if args.debug:
            raise
        err(f"deploy_endpoint: {describe(e)}")
        return 1
    if not args.delete:
        out(f"endpoint {args.name} is InService; invoke with TargetModel=<artifact name under {args.model_data_url}>")
    return 0


if __name__ == "__main__":
    sys.exit(main())
