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
