"""Media: local disk by default, S3-compatible storage (django-storages) when a bucket is set."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = (
    "from django.core.files.storage import storages; s = storages['default'];"
    "print(type(s).__name__, getattr(s, 'bucket_name', '-'), getattr(s, 'endpoint_url', '-'),"
    " getattr(s, 'location', '-'), getattr(s, 'querystring_auth', '-'),"
    " getattr(s, 'file_overwrite', '-'), getattr(s, 'default_acl', '-'))"
)


def _storage(env: dict[str, str]) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", CODE],
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "DJANGO_DEBUG": "true", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().splitlines()[-1]


def test_media_on_local_disk_by_default():
    assert _storage({}).startswith("FileSystemStorage ")


def test_media_on_s3_compatible_storage_when_a_bucket_is_set():
    line = _storage(
        {
            "AWS_STORAGE_BUCKET_NAME": "portal-media",
            "AWS_S3_ENDPOINT_URL": "https://minio.internal:9000",
            "AWS_S3_LOCATION": "tenant-media",
        }
    )
    assert line == (
        "S3Storage portal-media https://minio.internal:9000 tenant-media True False private"
    )
