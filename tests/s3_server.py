"""An S3-API server on 127.0.0.1 for the object-store tests (moto's server mode, as Ray's own tests use).

The real clients talk to it: s3fs (fsspec: the store, the run folder), pyarrow (Ray Train / Tune
storage) and botocore, pointed at it by the standard environment variables (``AWS_ENDPOINT_URL`` and
fake credentials), the way a deployment points them at MinIO or AWS. The secret key is unique per
server, so a test can search every written file and log for it.
"""

from __future__ import annotations

import logging
import secrets


class S3Server:
    """moto's threaded S3 server on a free loopback port; :attr:`env` points clients at it."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no line per request
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self._server.start()
        host, port = self._server.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.secret = f"semgen-test-secret-{secrets.token_hex(12)}"
        self.env = {"AWS_ACCESS_KEY_ID": "semgen-test-key", "AWS_SECRET_ACCESS_KEY": self.secret,
                    "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": self.endpoint,
                    "AWS_EC2_METADATA_DISABLED": "true"}  # no instance-metadata probing on a laptop / CI

    def _client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id=self.env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=self.secret)

    def create_bucket(self, name: str) -> str:
        """Create bucket ``name``; returns ``s3://name``."""
        self._client().create_bucket(Bucket=name)
        return f"s3://{name}"

    def buckets(self) -> list[str]:
        return [b["Name"] for b in self._client().list_buckets().get("Buckets", [])]

    def objects(self, bucket: str) -> dict[str, bytes]:
        """Every object of ``bucket``: key → content."""
        client = self._client()
        out = {}
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
            for item in page.get("Contents", []):
                out[item["Key"]] = client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
        return out

    def stop(self) -> None:
        self._server.stop()
