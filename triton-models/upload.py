#!/usr/bin/env python3
"""Uploads packed artifacts to s3://<bucket>/<prefix>/, as the launch post's upload_data does.

    python3 triton-models/upload.py s3://my-bucket/resnet-mme-gpu/ triton-models/dist/*.tar.gz

Credentials and region come from boto3's standard chain. For MinIO or another S3-compatible store set
AWS_ENDPOINT_URL_S3 (e.g. http://localhost:9000); path-style addressing is used then.
Prints the S3 URL of each object; MODEL_DATA_URL / ModelDataUrl is the prefix.
"""
import os
import sys
from urllib.parse import urlparse

import boto3
from botocore.config import Config


def main(argv):
    if len(argv) < 2 or not argv[0].startswith("s3://"):
        print(__doc__, file=sys.stderr)
        return 2
    url = urlparse(argv[0])
    bucket, prefix = url.netloc, url.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    endpoint = os.environ.get("AWS_ENDPOINT_URL_S3")
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        config=Config(s3={"addressing_style": "path"}) if endpoint else None,
    )
    for path in argv[1:]:
        key = prefix + os.path.basename(path)
        s3.upload_file(path, bucket, key)
        print(f"s3://{bucket}/{key}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
