"""moto_server with buckets loaded in-process before it serves (gc_bench).

WHARF_MOTO_PRELOAD=<folder>=<bucket>[,<bucket>...]: every file under <folder> becomes an
object (its path relative to <folder> is the key) in each bucket, through moto's own S3
backend, without an HTTP request each (moto answers about a hundred PUTs a second on a
loaded machine; this loads thousands a second). Then moto_server runs with the given
arguments.
"""

import os
import sys
import time

from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends
from moto.server import main


def preload(spec):
    folder, buckets = spec.split("=", 1)
    backend = s3_backends[DEFAULT_ACCOUNT_ID]["aws"]
    files = []
    for root, _dirs, names in os.walk(folder):
        for name in names:
            path = os.path.join(root, name)
            with open(path, "rb") as f:
                files.append((os.path.relpath(path, folder), f.read()))
    started = time.time()
    for bucket in buckets.split(","):
        backend.create_bucket(bucket, "us-east-1")
        for key, data in files:
            backend.put_object(bucket, key, data)
    print(
        f"moto_preload: {len(files)} objects into {buckets} in {time.time() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )


if __name__ == "__main__":
    spec = os.environ.get("WHARF_MOTO_PRELOAD")
    if spec:
        preload(spec)
    sys.exit(main(sys.argv[1:]))
