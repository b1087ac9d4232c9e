"""Offline tests of deploy_endpoint.py: real boto3 clients, every request checked by botocore's Stubber
against the exact parameters (and against the service models, which Stubber validates them with)."""
import io
import json
import os
import sys
import unittest

import boto3
from botocore.stub import Stubber

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import deploy_endpoint  # noqa: E402

IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/triton-sagemaker-mme-agent:0.1.0"
PREFIX = "s3://my-bucket/resnet-mme-gpu/"
ROLE = "arn:aws:iam::123456789012:role/SageMakerExecutionRole"
BASE = ["--name", "resnet-mme", "--image", IMAGE, "--model-data-url", PREFIX, "--role-arn", ROLE]
RESOURCE = "endpoint/resnet-mme/variant/AllTraffic"
ARN = "arn:aws:sagemaker:us-east-1:123456789012:{}/resnet-mme"


class Harness:
    def __init__(self):
        session = boto3.session.Session(
            region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test"
        )
        self.clients = {
            "sagemaker": session.client("sagemaker"),
            "application-autoscaling": session.client("application-autoscaling"),
        }
        self.stubs = {k: Stubber(c) for k, c in self.clients.items()}
        self.out, self.err = [], []

    def main(self, argv):
        for s in self.stubs.values():
            s.activate()
        try:
            return deploy_endpoint.main(
                argv,
                clients=self.clients,
                out=self.out.append,
                err=self.err.append,
                waiter_config={"Delay": 0, "MaxAttempts": 3},
            )
        finally:
            for s in self.stubs.values():
                s.deactivate()

    def expect(self, client, op, params, response=None):
        self.stubs[client].add_response(op, response or {}, params)

    def expect_error(self, client, op, params, code, message):
        self.stubs[client].add_client_error(op, service_error_code=code, service_message=message, http_status_code=400, expected_params=params)

    def all_used(self, test):
        for s in self.stubs.values():
            s.assert_no_pending_responses()


def expect_model(h, environment=None):
    container = {"Image": IMAGE, "ModelDataUrl": PREFIX, "Mode": "MultiModel"}
    if environment:
        container["Environment"] = environment
    h.expect(
        "sagemaker",
        "create_model",
        {"ModelName": "resnet-mme", "ExecutionRoleArn": ROLE, "PrimaryContainer": container},
        {"ModelArn": ARN.format("model")},
    )


def expect_endpoint_config(h, instance_type="ml.g4dn.4xlarge", count=2):
    h.expect(
        "sagemaker",
        "create_endpoint_config",
        {
            "EndpointConfigName": "resnet-mme",
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "resnet-mme",
                    "InstanceType": instance_type,
                    "InitialInstanceCount": count,
                    "InitialVariantWeight": 1,
                    "InferenceAmiVersion": deploy_endpoint.RELEASE["inferenceAmiVersion"],
                }
            ],
        },
        {"EndpointConfigArn": ARN.format("endpoint-config")},
    )


def expect_endpoint(h):
    h.expect(
        "sagemaker",
        "create_endpoint",
        {"EndpointName": "resnet-mme", "EndpointConfigName": "resnet-mme"},
        {"EndpointArn": ARN.format("endpoint")},
    )


def described(status):
    return {
        "EndpointName": "resnet-mme",
        "EndpointArn": ARN.format("endpoint"),
        "EndpointConfigName": "resnet-mme",
        "EndpointStatus": status,
        "CreationTime": "2026-01-01T00:00:00Z",
        "LastModifiedTime": "2026-01-01T00:00:00Z",
    }


def expect_in_service(h, creating_polls=1):
    for _ in range(creating_polls):
        h.expect("sagemaker", "describe_endpoint", {"EndpointName": "resnet-mme"}, described("Creating"))
    h.expect("sagemaker", "describe_endpoint", {"EndpointName": "resnet-mme"}, described("InService"))


def expect_scalable_target(h, lo=1, hi=5):
    h.expect(
        "application-autoscaling",
        "register_scalable_target",
        {
            "ServiceNamespace": "sagemaker",
            "ResourceId": RESOURCE,
            "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
            "MinCapacity": lo,
            "MaxCapacity": hi,
        },
    )


class DeployTest(unittest.TestCase):
    def test_gpu_utilization_deployment_as_the_launch_post_does_it(self):
        h = Harness()
        expect_model(h)
        expect_endpoint_config(h)
        expect_endpoint(h)
        expect_in_service(h, creating_polls=2)
        expect_scalable_target(h)
        h.expect(
            "application-autoscaling",
            "put_scaling_policy",
            {
                "PolicyName": "resnet-mme-GPUUtilization",
                "ServiceNamespace": "sagemaker",
                "ResourceId": RESOURCE,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 60.0,
                    "CustomizedMetricSpecification": {
                        "MetricName": "GPUUtilization",
                        "Namespace": "/aws/sagemaker/Endpoints",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": "resnet-mme"},
                            {"Name": "VariantName", "Value": "AllTraffic"},
                        ],
                        "Statistic": "Average",
                        "Unit": "Percent",
                    },
                    "ScaleInCooldown": 600,
                    "ScaleOutCooldown": 200,
                },
            },
            {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:x"},
        )
        self.assertEqual(h.main(BASE), 0, h.err)
        h.all_used(self)
        self.assertIn("endpoint resnet-mme is InService", h.out[-1])

    def test_invocations_per_instance_with_environment_and_sizes(self):
        h = Harness()
        expect_model(h, {"LOG_LEVEL": "debug", "AGENT_EVICTION_POLICY": "lru"})
        expect_endpoint_config(h, "ml.g5.2xlarge", 3)
        expect_endpoint(h)
        expect_in_service(h, creating_polls=0)
        expect_scalable_target(h, 2, 8)
        h.expect(
            "application-autoscaling",
            "put_scaling_policy",
            {
                "PolicyName": "resnet-mme-InvocationsPerInstance",
                "ServiceNamespace": "sagemaker",
                "ResourceId": RESOURCE,
                "ScalableDimension": "sagemaker:variant:DesiredInstanceCount",
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 250.0,
                    "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
                    "ScaleInCooldown": 300,
                    "ScaleOutCooldown": 60,
                },
            },
            {"PolicyARN": "arn:aws:autoscaling:us-east-1:123456789012:scalingPolicy:y"},
        )
        argv = BASE + [
            "--instance-type", "ml.g5.2xlarge", "--instance-count", "3", "--min-capacity", "2", "--max-capacity", "8",
            "--metric", "InvocationsPerInstance", "--target", "250", "--scale-in-cooldown", "300",
            "--scale-out-cooldown", "60", "--env", "LOG_LEVEL=debug", "--env", "AGENT_EVICTION_POLICY=lru",
        ]  # fmt: skip
        self.assertEqual(h.main(argv), 0, h.err)
        h.all_used(self)

    def test_a_failure_midway_deletes_what_this_run_created(self):
        h = Harness()
        expect_model(h)
        expect_endpoint_config(h)
        h.expect_error(
            "sagemaker",
            "create_endpoint",
            {"EndpointName": "resnet-mme", "EndpointConfigName": "resnet-mme"},
            "ResourceLimitExceeded",
            "The account-level service limit 'ml.g4dn.4xlarge for endpoint usage' is 0 Instances",
        )
        h.expect("sagemaker", "delete_endpoint_config", {"EndpointConfigName": "resnet-mme"})
        h.expect("sagemaker", "delete_model", {"ModelName": "resnet-mme"})
        self.assertEqual(h.main(BASE), 1)
        h.all_used(self)
        self.assertRegex(h.err[0], r"ResourceLimitExceeded.*ml\.g4dn\.4xlarge")
        self.assertEqual(h.out[-2:], ["rolled back: delete_endpoint_config", "rolled back: delete_model"])

    def test_an_endpoint_that_fails_to_start_is_removed_with_its_config_and_model(self):
        h = Harness()
        expect_model(h)
        expect_endpoint_config(h)
        expect_endpoint(h)
        h.expect("sagemaker", "describe_endpoint", {"EndpointName": "resnet-mme"}, dict(described("Failed"), FailureReason="image pull failed"))
        h.expect("sagemaker", "delete_endpoint", {"EndpointName": "resnet-mme"})
        h.expect("sagemaker", "delete_endpoint_config", {"EndpointConfigName": "resnet-mme"})
        h.expect("sagemaker", "delete_model", {"ModelName": "resnet-mme"})
        self.assertEqual(h.main(BASE), 1)
        h.all_used(self)

    def test_an_image_sagemaker_refuses_is_reported_with_its_reason_not_a_traceback(self):
        h = Harness()
        expect_model(h)
        expect_endpoint_config(h)
        expect_endpoint(h)
        reason = "The primary container for production variant AllTraffic did not pass the ping health check."
        failed = dict(described("Failed"), FailureReason=reason)
        h.expect("sagemaker", "describe_endpoint", {"EndpointName": "resnet-mme"}, failed)
        h.expect("sagemaker", "describe_endpoint", {"EndpointName": "resnet-mme"}, failed)
        h.expect("sagemaker", "delete_endpoint", {"EndpointName": "resnet-mme"})
        h.expect("sagemaker", "delete_endpoint_config", {"EndpointConfigName": "resnet-mme"})
        h.expect("sagemaker", "delete_model", {"ModelName": "resnet-mme"})
        self.assertEqual(h.main(BASE), 1)
        h.all_used(self)
        self.assertEqual(h.err, [f"deploy_endpoint: endpoint resnet-mme did not start: {reason}"])

    def test_no_region_or_no_credentials_is_one_line_naming_the_fix(self):
        saved = {k: os.environ.pop(k, None) for k in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_PROFILE")}
        os.environ["AWS_SHARED_CREDENTIALS_FILE"] = "/nonexistent/credentials"
        os.environ["AWS_CONFIG_FILE"] = "/nonexistent/config"
        try:
            err = []
            self.assertEqual(deploy_endpoint.main(BASE, err=err.append, out=lambda m: None), 2)
            self.assertEqual(
                err, ["deploy_endpoint: no AWS region: pass --region, or set AWS_REGION or AWS_DEFAULT_REGION (e.g. AWS_REGION=us-east-1)"]
            )
            # AWS_REGION alone (what the README's docker run uses) is enough for the region.
            os.environ["AWS_REGION"] = "eu-west-1"
            err = []
            self.assertEqual(deploy_endpoint.main(BASE, err=err.append, out=lambda m: None), 2)
            self.assertEqual(len(err), 1)
            self.assertIn("no AWS credentials found", err[0])
        finally:
            for k in ("AWS_REGION", "AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
                os.environ.pop(k, None)
            for k, v in saved.items():
                if v is not None:
                    os.environ[k] = v

    def test_bad_arguments_call_nothing(self):
        cases = [
            (["--image", "docker.io/me/agent:1"], "not an ECR image URI"),
            (["--model-data-url", "s3://my-bucket/resnet-mme-gpu"], "ending in '/'"),
            (["--model-data-url", "https://my-bucket/x/"], "must be an S3 prefix"),
            (["--role-arn", "SageMakerRole"], "not an IAM role ARN"),
            (["--instance-type", "ml.m5.xlarge"], "need a GPU instance type"),
            (["--min-capacity", "3", "--max-capacity", "2"], "min-capacity"),
            (["--instance-count", "9"], "between --min-capacity and --max-capacity"),
            (["--target", "0"], "must be positive"),
            (["--env", "NOEQUALS"], "expected KEY=VALUE"),
            (["--name", "has_underscore"], "letters, digits and hyphens"),
        ]
        for extra, message in cases:
            with self.subTest(extra=extra):
                h = Harness()  # nothing queued: any AWS call would raise
                args = list(BASE)
                for i in range(0, len(extra), 2):
                    if extra[i] in args:
                        args[args.index(extra[i]) + 1] = extra[i + 1]
                    else:
                        args += extra[i : i + 2]
                self.assertEqual(h.main(args), 2)
                self.assertIn(message, h.err[0])
                h.all_used(self)

    def test_dry_run_prints_the_requests_and_calls_nothing(self):
        h = Harness()
        self.assertEqual(h.main(BASE + ["--dry-run"]), 0)
        steps = json.loads(h.out[0])
        self.assertEqual(
            [s["operation"] for s in steps],
            ["create_model", "create_endpoint_config", "create_endpoint", "endpoint_in_service", "register_scalable_target", "put_scaling_policy"],
        )
        self.assertEqual(steps[0]["params"]["PrimaryContainer"]["Mode"], "MultiModel")

    def test_delete_removes_everything_and_skips_what_is_missing(self):
        h = Harness()
        target = {"ServiceNamespace": "sagemaker", "ResourceId": RESOURCE, "ScalableDimension": "sagemaker:variant:DesiredInstanceCount"}
        h.expect("application-autoscaling", "delete_scaling_policy", dict(target, PolicyName="resnet-mme-GPUUtilization"))
        h.expect_error(
            "application-autoscaling", "delete_scaling_policy", dict(target, PolicyName="resnet-mme-InvocationsPerInstance"),
            "ObjectNotFoundException", "No scaling policy found",
        )  # fmt: skip
        h.expect("application-autoscaling", "deregister_scalable_target", target)
        h.expect("sagemaker", "delete_endpoint", {"EndpointName": "resnet-mme"})
        h.expect("sagemaker", "delete_endpoint_config", {"EndpointConfigName": "resnet-mme"})
        h.expect("sagemaker", "delete_model", {"ModelName": "resnet-mme"})
        self.assertEqual(h.main(["--name", "resnet-mme", "--delete"]), 0, h.err)
        h.all_used(self)
        self.assertIn("delete_scaling_policy: nothing to delete (ObjectNotFoundException)", h.out)


if __name__ == "__main__":
    unittest.main()
