"""docker/compose.yml validates offline with Debian's docker-compose."""
import shutil
import subprocess

from tests.conftest import REPO


def test_compose_file_validates():
    exe = shutil.which("docker-compose")
    assert exe, "Debian's docker-compose must be installed (the Makefile's deps step does it)"
    out = subprocess.run([exe, "-f", "docker/compose.yml", "config", "-q"], cwd=REPO, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


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
