#!/usr/bin/env python3
"""Uploads packed artifacts to s3://<bucket>/<prefix>/, as the launch post's upload_data does.

    python3 triton-models/upload.py s3://my-bucket/resnet-mme-gpu/ triton-models/dist/*.tar.gz

Prints the S3 URL of each object; MODEL_DATA_URL / ModelDataUrl is the prefix, and each file's name is
the TargetModel that invokes it. Credentials come from boto3's standard chain (AWS_PROFILE,
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, `aws configure`, an instance role); the region does not need to
be set (S3 finds the bucket's). For MinIO or another S3-compatible store set AWS_ENDPOINT_URL_S3 (e.g.
http://localhost:9000) and its keys as AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; path-style addressing
is used then.

Exit status: 0 all uploaded, 1 an upload failed (those before it are uploaded), 2 bad arguments, a
missing file or no credentials (nothing was uploaded). Failures are one line naming the fix; --debug adds
the traceback.
"""
import argparse
import os
import sys
from urllib.parse import urlparse

CREDENTIALS_FIX = (
    "run `aws configure`, set AWS_PROFILE, or set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
    "(for MinIO: its access and secret key)"
)
# Codes S3 answers when it does not accept the credentials themselves (unknown key, bad secret, expired).
REFUSED_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
}


class Refused(Exception):
    """A problem found before any upload (arguments, files, credentials): one line, exit 2."""


def _one_line(text):
    return " ".join(str(text).split())


def explain(err, bucket, key):
    """One line saying what went wrong and how to fix it, for the errors a user meets; None for the rest."""
    from botocore import exceptions as bx

    where = f"s3://{bucket}/{key}"
    # upload_file wraps S3's answer in S3UploadFailedError; the ClientError it was raised from says more.
    cause = err.__cause__ or err.__context__
    if type(err).__name__ == "S3UploadFailedError" and isinstance(cause, bx.ClientError):
        err = cause
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
    if isinstance(err, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError, bx.ConnectionClosedError)):
        fix = "check that the store is running and AWS_ENDPOINT_URL_S3" if os.environ.get("AWS_ENDPOINT_URL_S3") else "check the network"
        return f"could not reach S3 ({_one_line(err)}): {fix}"
    if isinstance(err, bx.ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        message = _one_line(err.response.get("Error", {}).get("Message", ""))
        said = f"S3 refused {where} ({code}: {message})" if message else f"S3 refused {where} ({code})"
        if code == "NoSuchBucket":
            return f"bucket '{bucket}' does not exist: create it (aws s3 mb s3://{bucket}) or fix the URL"
        if code in ("AccessDenied", "AllAccessDisabled", "Forbidden", "403"):
            folder = key[: key.rfind("/") + 1]
            return f"{said}: the credentials in use need s3:PutObject on s3://{bucket}/{folder}* (and kms:GenerateDataKey if the bucket encrypts with KMS)"
        if code in REFUSED_CREDENTIALS:
            return f"{said}: the store does not accept these credentials; {CREDENTIALS_FIX}, or refresh a session token"
        if code in ("PermanentRedirect", "AuthorizationHeaderMalformed", "IllegalLocationConstraintException"):
            return f"{said}: the bucket is in another region; set AWS_REGION to the bucket's region"
        return said
    return None


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "prefix", metavar="s3://BUCKET/PREFIX/", help="where the artifacts go; a missing trailing '/' is added (required)"
    )
    p.add_argument("files", nargs="+", metavar="ARTIFACT", help="packed .tar.gz files, e.g. triton-models/dist/*.tar.gz (required)")
    p.add_argument("--debug", action="store_true", help="on a failure, print the full traceback too (default: off)")
    return p.parse_args(argv)


def check(args):
    """Bucket, key prefix and files, or Refused: every file is checked before the first upload."""
    url = urlparse(args.prefix)
    if url.scheme != "s3" or not url.netloc:
        raise Refused(f"'{args.prefix}' is not an S3 prefix: expected s3://bucket/prefix/")
    bucket, prefix = url.netloc, url.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    for path in args.files:
        if os.path.isdir(path):
            raise Refused(f"{path} is a folder: pass the packed files, e.g. {os.path.join(path, '*.tar.gz')}")
        if not os.path.isfile(path):
            hint = "run triton-models/pack.sh first" if "*" in path or "dist" in path else "check the path"
            raise Refused(f"no such file: {path} ({hint})")
    return bucket, prefix


def make_client():
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        raise Refused("boto3 is not installed: pip install boto3")
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
    session = boto3.session.Session()
    if session.get_credentials() is None:
        raise Refused(f"no AWS credentials found: {CREDENTIALS_FIX}")
    return session.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}) if endpoint else None,
    )


def main(argv, out=print, err=lambda m: print(m, file=sys.stderr)):
    args = parse_args(argv)
    bucket, key = "", ""
    try:
        bucket, prefix = check(args)
        try:
            s3 = make_client()
        except Refused:
            raise
        except Exception as e:  # a missing profile, partial keys, an expired SSO session
            hint = explain(e, bucket, prefix)
            if hint is None:
                raise
            raise Refused(hint) from e
        for path in args.files:
            key = prefix + os.path.basename(path)
            s3.upload_file(path, bucket, key)
            out(f"s3://{bucket}/{key}")
    except Refused as e:
        if args.debug:
            raise
        err(f"upload: {e}")
        return 2
    except Exception as e:
        if args.debug:
            raise
        hint = explain(e, bucket, key) or f"{type(e).__name__}: {_one_line(e)} (--debug shows the traceback)"
        err(f"upload: {hint}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
