#!/usr/bin/env python
"""`make run`: migrate, set up roles and demo accounts, load the demo dataset when the database is
empty, then run the web server on 127.0.0.1:8000, one Celery worker per queue (cpu, gpu) and the DICOM node's
listener (port ADRENAL_DICOM_PORT, 11112; ADRENAL_DICOM_LISTENER=0 leaves it out) until Ctrl-C."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PY = sys.executable
HOST, PORT = os.environ.get("ADRENAL_HOST", "127.0.0.1"), os.environ.get("ADRENAL_PORT", "8000")


def manage(*args: str, env: dict | None = None) -> None:
    """Run a manage.py step; one that fails stops `make run` with its own message (printed above), not a
    traceback of this script."""
    done = subprocess.run([PY, "manage.py", *args], cwd=REPO, env={**os.environ, **(env or {})})
    if done.returncode:
        print(f"make run stopped: manage.py {' '.join(args)} failed (its message is above)", file=sys.stderr)
        sys.exit(done.returncode)


def worker(queue: str, concurrency: int) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, "-m", "celery", "-A", "adrenal_site", "worker", "-Q", queue, "-c", str(concurrency), "-n",
         f"local-{queue}@%h", "-l", "INFO", "--without-gossip", "--without-mingle"],
        cwd=REPO,
    )


def main() -> int:
    os.environ.setdefault("ADRENAL_LOCAL_SECRET", "1")
    manage("migrate", "--noinput", "-v", "0")
    manage("collectstatic", "--noinput", "-v", "0")
    manage("setup_site", "--demo", env={"DEBUG": "1"})  # demo accounts and data: local use only, so DEBUG
    procs = {
        "web": subprocess.Popen([PY, "manage.py", "runserver", f"{HOST}:{PORT}", "--noreload"], cwd=REPO),
        # a worker per queue, so an import or an image rebuild never waits behind training
        "worker-cpu": worker("cpu", 2),
        "worker-gpu": worker("gpu", 2),  # two folds at a time
    }
    if os.environ.get("ADRENAL_DICOM_LISTENER", "1") != "0":
        procs["dicom listener"] = subprocess.Popen([PY, "manage.py", "dicom_listener"], cwd=REPO)
    print(f"\n  Adrenal CT is running at http://{HOST}:{PORT}/  (Ctrl-C stops the server and the workers)\n", flush=True)

    def stop(*_: object) -> None:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.time() + 30
        for proc in procs.values():
            try:
                proc.wait(max(1.0, deadline - time.time()))
            except subprocess.TimeoutExpired:
                proc.kill()

    signal.signal(signal.SIGTERM, lambda *a: (stop(), sys.exit(0)))
    try:
        while all(p.poll() is None for p in procs.values()):
            time.sleep(0.5)
        dead = [name for name, p in procs.items() if p.poll() is not None]
        print(f"{', '.join(dead)} exited; stopping", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\nstopping web server and workers ...", flush=True)
        return 0
    finally:
        stop()


if __name__ == "__main__":
    sys.exit(main())
