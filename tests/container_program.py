"""A ContainerSource program for tests: posts one CloudEvent to ``$K_SINK``, then acts per ``argv``.

Usage: ``container_program.py MODE [EXIT_CODE] [LINGER_SECONDS]`` where MODE is

* ``once``: exit with EXIT_CODE after LINGER_SECONDS;
* ``serve``: wait for SIGTERM, say so on stdout, exit 0;
* ``stubborn``: ignore SIGTERM and wait forever.

The event: ``type`` from ``$EVENT_TYPE``, ``source`` ``/tests/container``, every extension of
``$K_CE_OVERRIDES`` applied, data ``pid <pid>`` (text/plain). Standard library only.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
import urllib.request
import uuid
from types import FrameType


def post() -> None:
    overrides = json.loads(os.environ["K_CE_OVERRIDES"])["extensions"]
    event_id = str(uuid.uuid4())
    headers = {
        "ce-specversion": "1.0",
        "ce-id": event_id,
        "ce-source": "/tests/container",
        "ce-type": os.environ["EVENT_TYPE"],
        "content-type": "text/plain",
    }
    headers.update({f"ce-{name}": value for name, value in overrides.items()})
    body = f"pid {os.getpid()}".encode()
    request = urllib.request.Request(os.environ["K_SINK"], data=body, headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=5) as response:
        print(f"sent {event_id} status {response.status}", flush=True)


def main() -> int:
    mode = sys.argv[1]
    code = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    linger = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    post()
    print("second line", flush=True)
    print("a line on stderr", file=sys.stderr, flush=True)
    if mode == "once":
        time.sleep(linger)
        return code
    if mode == "serve":

        def terminate(signum: int, frame: FrameType | None) -> None:
            print("terminating on SIGTERM", flush=True)
            sys.exit(0)

        signal.signal(signal.SIGTERM, terminate)
        print("waiting for SIGTERM", flush=True)
    else:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("ignoring SIGTERM", flush=True)
    while True:
        time.sleep(60)


if __name__ == "__main__":
    sys.exit(main())
