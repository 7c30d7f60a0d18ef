"""Object stores on loopback for the tests: moto's S3 server and the Cloud Storage emulator.

Each runs in a thread of the test process on a port the OS picks on 127.0.0.1.
``environ`` holds what a client needs to reach it (dummy credentials, the
emulator's address); a fixture sets it for the session or hands it to Ray workers.
"""

from __future__ import annotations

import functools
import http.server
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

LOOPBACK = "127.0.0.1"
GCS_PROJECT = "django-ray-tests"


@dataclass
class ObjectStoreServer:
    """A running server: its URL, the environment a client needs, and how to stop it."""

    name: str
    url: str
    environ: dict[str, str]
    unset: tuple[str, ...] = ()
    _stop: Callable[[], None] = field(repr=False, default=lambda: None)

    def stop(self) -> None:
        """Shut the server down and wait for its thread."""
        self._stop()


def start_s3_server() -> ObjectStoreServer:
    """moto in server mode: the real S3 HTTP API, in memory.

    boto3 reaches it through ``endpoint_url`` (``RESULT_STORAGE_S3_ENDPOINT_URL``)
    with dummy credentials from the environment; no shared config or instance
    metadata is consulted.
    """
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address=LOOPBACK, port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    return ObjectStoreServer(
        name="s3",
        url=f"http://{host}:{port}",
        environ={
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        },
        unset=("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"),
        _stop=server.stop,
    )


def start_gcs_server() -> ObjectStoreServer:
    """gcp-storage-emulator's request handler on our own HTTP server, in memory.

    google-cloud-storage talks to it when ``STORAGE_EMULATOR_HOST`` holds its URL;
    it then uses anonymous credentials and ``GOOGLE_CLOUD_PROJECT`` as project.
    """
    from gcp_storage_emulator.server import RequestHandler
    from gcp_storage_emulator.storage import Storage

    storage = Storage(use_memory_fs=True)
    httpd = http.server.HTTPServer((LOOPBACK, 0), functools.partial(RequestHandler, storage))
    thread = threading.Thread(target=httpd.serve_forever, name="gcs-emulator", daemon=True)
    thread.start()
    port = httpd.server_address[1]

    def stop() -> None:
        httpd.shutdown()
        httpd.server_close()
        thread.join()

    url = f"http://{LOOPBACK}:{port}"
    return ObjectStoreServer(
        name="gcs",
        url=url,
        environ={"STORAGE_EMULATOR_HOST": url, "GOOGLE_CLOUD_PROJECT": GCS_PROJECT},
        unset=("GOOGLE_APPLICATION_CREDENTIALS",),
        _stop=stop,
    )
