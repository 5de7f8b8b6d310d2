"""docker/compose.yml validates offline with Debian's docker-compose, and has no default secrets."""
import os
import shutil
import subprocess

from tests.conftest import REPO


def compose_config(**env):
    exe = shutil.which("docker-compose")
    assert exe, "Debian's docker-compose must be installed (the Makefile's deps step does it)"
    clean = {k: v for k, v in os.environ.items() if k not in {"POSTGRES_PASSWORD", "SECRET_KEY"}}
    return subprocess.run([exe, "-f", "docker/compose.yml", "config"], cwd=REPO, capture_output=True, text=True,
                          env={**clean, **env})


def test_compose_file_validates():
    out = compose_config(POSTGRES_PASSWORD="pw-test", SECRET_KEY="k" * 50)
    assert out.returncode == 0, out.stderr
    # HTTPS on in the compose file: HSTS, redirect and Secure cookies
    for line in ("SECURE_SSL_REDIRECT: '1'", "SECURE_HSTS_SECONDS: '31536000'", "SECURE_COOKIES: '1'"):
        assert line in out.stdout, line


def test_compose_has_no_default_database_password_or_secret():
    out = compose_config(SECRET_KEY="k" * 50)
    assert out.returncode != 0 and "POSTGRES_PASSWORD" in out.stderr
    out = compose_config(POSTGRES_PASSWORD="pw-test")
    assert out.returncode != 0 and "SECRET_KEY" in out.stderr


def test_compose_has_the_services_and_queues():
    text = (REPO / "docker" / "compose.yml").read_text()
    for service in ("postgres:", "redis:", "web:", "worker-cpu:", "worker-gpu:"):
        assert service in text
    assert '"-Q", "cpu"' in text and '"-Q", "gpu"' in text
    assert "driver: nvidia" in text


def test_web_and_both_workers_mount_the_one_shared_data_volume():
    """Uploads the web app saves, and volumes, images and weights the workers write, are in one volume at the
    data dir every service is configured with (README "Workers on other machines")."""
    import re

    text = (REPO / "docker" / "compose.yml").read_text()
    blocks = dict(re.findall(r"(?ms)^  ([a-z][a-z-]*):\n(.*?)(?=^  [a-z][a-z-]*:\n|^\S)", text))
    for service in ("web", "worker-cpu", "worker-gpu", "dicom-listener"):
        assert re.search(r"^      - media:/data\b", blocks[service], re.M), f"{service} does not mount media at /data"
    assert "ADRENAL_DATA_DIR: /data" in text and "MEDIA_ROOT: /data/media" in text


DOCKERFILES = ("Dockerfile.web", "Dockerfile.worker-cpu", "Dockerfile.worker-gpu")


def test_every_image_copies_every_package_the_project_installs():
    """The images ran `pip install .` without `synthetic/`, which inference.tasks imports (the demo pipeline):
    web, workers and listener stopped at startup with ModuleNotFoundError. Every package pyproject.toml lists is
    copied into every image."""
    import tomllib

    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for name in DOCKERFILES:
        text = (REPO / "docker" / name).read_text()
        for pattern in packages:
            package = pattern.rstrip("*")
            assert f"COPY {package} {package}" in text, f"{name} does not copy {package}/"


def test_every_image_runs_as_the_same_uid_on_the_shared_volume():
    """The GPU image's user was uid 1001, the others' 1000: whichever image first populated the shared /data
    volume owned it, and the other could not write there (weights, verdict inputs, uploads)."""
    import re

    uids = {name: re.findall(r"useradd --uid (\d+)", (REPO / "docker" / name).read_text()) for name in DOCKERFILES}
    assert all(len(found) == 1 for found in uids.values()), uids
    assert len({found[0] for found in uids.values()}) == 1, uids


def test_web_healthcheck_passes_behind_the_https_redirect_compose_turns_on(tmp_path):
    """The web image's healthcheck followed Django's redirect to https, which gunicorn does not speak: with
    compose's SECURE_SSL_REDIRECT=1 the container was unhealthy forever. It now runs against a real server with
    those settings and passes; it fails when nothing answers."""
    import re
    import sys
    import time

    from tests.plugins.pacs import free_port

    text = (REPO / "docker" / "Dockerfile.web").read_text()
    code = re.search(r'^HEALTHCHECK .* CMD python -c "(.*)"$', text, re.M).group(1)
    port = free_port()
    check = [sys.executable, "-c", code.replace("8000", str(port))]
    assert subprocess.run(check, capture_output=True).returncode != 0  # nothing listening: unhealthy
    env = {**os.environ, "SECURE_SSL_REDIRECT": "1", "SECURE_PROXY_SSL_HEADER": "1", "SECURE_COOKIES": "1",
           "ADRENAL_DATA_DIR": str(tmp_path), "ADRENAL_LOCAL_SECRET": "1", "DEBUG": "0"}
    env.pop("DATABASE_URL", None)
    server = subprocess.Popen([sys.executable, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload",
                               "--skip-checks"], cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            result = subprocess.run(check, capture_output=True, text=True)
            if result.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert result.returncode == 0, result.stderr
        old = "import urllib.request; urllib.request.urlopen('http://127.0.0.1:%d/accounts/login/')" % port
        assert subprocess.run([sys.executable, "-c", old], capture_output=True).returncode != 0  # the redirect
    finally:
        server.terminate()
        server.wait(30)
