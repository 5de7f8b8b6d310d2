"""Settings come from the environment: SQLite + filesystem broker by default, PostgreSQL + Redis when asked."""
import json
import os
import subprocess
import sys

from tests.conftest import REPO

PROBE = (
    "import json, django; django.setup(); from django.conf import settings as s; "
    "from adrenal_site.celery import app; "
    "print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], 'name': str(s.DATABASES['default']['NAME']), "
    "'broker': app.conf.broker_url, 'opts': app.conf.broker_transport_options, 'acks_late': app.conf.task_acks_late, "
    "'prefetch': app.conf.worker_prefetch_multiplier, 'reject': app.conf.task_reject_on_worker_lost, "
    "'hard': app.conf.task_time_limit, 'soft': app.conf.task_soft_time_limit, "
    "'queues': sorted(q.name for q in app.conf.task_queues), 'debug': s.DEBUG}))"
)


def probe(tmp_path, **env) -> dict:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "CELERY_BROKER_URL", "DEBUG"}}
    base.update(ADRENAL_DATA_DIR=str(tmp_path), ADRENAL_LOCAL_SECRET="1", DJANGO_SETTINGS_MODULE="adrenal_site.settings")
    base.update(env)
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, env=base, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_default_is_sqlite_and_filesystem_broker(tmp_path):
    cfg = probe(tmp_path)
    assert cfg["engine"] == "django.db.backends.sqlite3"
    assert cfg["name"] == str(tmp_path / "db.sqlite3")
    assert cfg["broker"].startswith("filesystem://")
    assert cfg["opts"]["data_folder_in"].startswith(str(tmp_path))
    assert cfg["debug"] is False
    assert cfg["acks_late"] and cfg["reject"] and cfg["prefetch"] == 1
    assert cfg["queues"] == ["cpu", "gpu"]
    assert cfg["soft"] < cfg["hard"]


def test_environment_switches_to_postgresql_and_redis(tmp_path):
    cfg = probe(tmp_path, DATABASE_URL="postgres://127.0.0.1:5432/test", CELERY_BROKER_URL="redis://127.0.0.1:6379/0")
    assert cfg["engine"] == "django.db.backends.postgresql"
    assert cfg["name"] == "test"
    assert cfg["broker"] == "redis://127.0.0.1:6379/0"
    # Redis must not redeliver a task that is still within its hard time limit.
    assert cfg["opts"]["visibility_timeout"] > cfg["hard"]


def test_secret_key_required_when_debug_off_without_local_opt_in(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "ADRENAL_LOCAL_SECRET", "DEBUG"}}
    env.update(ADRENAL_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="adrenal_site.settings")
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "SECRET_KEY is not set" in out.stderr
    # DEBUG on generates one and keeps it.
    env["DEBUG"] = "1"
    subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=env, check=True)
    assert len((tmp_path / "secret_key").read_text()) > 40


def test_a_numeric_variable_out_of_its_range_stops_the_site_naming_it(tmp_path):
    """Every number the settings read goes through settings.env_number: text, NaN, a fraction for a count or a
    value out of range stops start-up with ImproperlyConfigured naming the variable, its value and the range
    (int()/float() named neither, or took nan and -5); an empty value is the default."""
    env = {**os.environ, "ADRENAL_DATA_DIR": str(tmp_path), "ADRENAL_LOCAL_SECRET": "1",
           "DJANGO_SETTINGS_MODULE": "adrenal_site.settings"}
    code = "import django; django.setup(); from django.conf import settings; print(settings.ADRENAL_DICOM_KEY_IMAGES)"
    for name, value, range_ in (("ADRENAL_DICOM_KEY_IMAGES", "six", "0 to 100"),
                                ("ADRENAL_MAX_BOX_SIDE_MM", "nan", "1 to 2000"),
                                ("ADRENAL_MAX_ZIP_RATIO", "-5", "1 to 1e+06"),
                                ("ADRENAL_LOGIN_MAX_FAILURES", "2.5", "1 to 1e+06"),
                                ("ADRENAL_DICOM_PORT", "70000", "0 to 65535")):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, name: value}, capture_output=True,
                             text=True)
        assert out.returncode != 0 and "ImproperlyConfigured" in out.stderr, (name, out.stderr[-300:])
        assert f"{name}={value!r}: must be" in out.stderr and range_ in out.stderr, out.stderr[-300:]
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**env, "ADRENAL_DICOM_KEY_IMAGES": " "},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "6"


def test_processes_starting_together_keep_one_secret_key(tmp_path):
    """The web server and the workers start together on a fresh data folder (make run): all of them read the one
    key the first process kept, never an empty or a second one, and no temporary file is left."""
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "DEBUG"}}
    env.update(ADRENAL_DATA_DIR=str(tmp_path), ADRENAL_LOCAL_SECRET="1", DJANGO_SETTINGS_MODULE="adrenal_site.settings")
    code = "import django; django.setup(); from django.conf import settings; print(settings.SECRET_KEY)"
    procs = [subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    keys = {p.communicate(timeout=120)[0].strip().splitlines()[-1] for p in procs}
    assert all(p.returncode == 0 for p in procs)
    assert keys == {(tmp_path / "secret_key").read_text().strip()} and len(keys.pop()) > 40
    assert oct((tmp_path / "secret_key").stat().st_mode & 0o777) == "0o600"
    assert [p.name for p in tmp_path.iterdir() if "secret" in p.name] == ["secret_key"]
    (tmp_path / "secret_key").write_text("")  # as a crash in the middle of writing it left it
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert out.returncode != 0 and "holds no usable key (0 characters): delete it" in out.stderr


def test_live_database_is_the_configured_one(db):
    from django.db import connection

    expected = "postgresql" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "sqlite"
    assert connection.vendor == expected


def test_every_variable_the_settings_read_is_in_the_readmes_configuration_table():
    """CSRF_TRUSTED_ORIGINS (which compose passes on), ADRENAL_AUTO_PROPOSE, CELERY_QUEUE_DIR and LOG_LEVEL were
    read from the environment but named nowhere in the README, so an admin could not know them."""
    import re

    from tests.conftest import REPO

    names = set(re.findall(r'(?:environ\.get|env_bool|env_number)\(\s*"([A-Z_]+)"', (REPO / "adrenal_site" / "settings.py").read_text()))
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Configuration"):readme.index("## Tests and CI")]
    assert names and not sorted(n for n in names if not re.search(rf"`{n}[`=]", table))


def test_the_embedded_broker_connects_without_a_warning(tmp_path):
    """Every manage.py command that queued a job on the embedded broker printed kombu's "No hostname was
    supplied. Reverting to default 'localhost'", which reads as a configuration error to whoever runs it. (A
    CELERY_BROKER_URL set in the environment is read by Celery itself, so a bare filesystem:// there still warns.)"""
    code = ("import django, logging; django.setup(); logging.basicConfig(level=logging.WARNING); "
            "from adrenal_site.celery import app\n"
            "with app.connection_for_write() as conn: conn.ensure_connection(max_retries=1); print(conn.as_uri())")
    for url in ("", "filesystem://localhost//"):  # the default, and as the README's table names it
        env = {k: v for k, v in os.environ.items() if k not in {"CELERY_BROKER_URL", "DATABASE_URL"}}
        env.update(ADRENAL_DATA_DIR=str(tmp_path), ADRENAL_LOCAL_SECRET="1", DJANGO_SETTINGS_MODULE="adrenal_site.settings")
        if url:
            env["CELERY_BROKER_URL"] = url
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True, check=True)
        assert out.stdout.startswith("filesystem://") and "No hostname" not in out.stderr, out.stderr


def test_every_adrenal_variable_the_readme_names_is_read_from_the_environment(tmp_path):
    """The README told admins to set ADRENAL_PSEUDONYM_KEY (the pseudonyms' key), ADRENAL_MAX_BOX_SIDE_MM and
    ADRENAL_AUTO_REBUILD_IMAGES, but the settings never read them from the environment: setting one changed
    nothing (the pseudonyms stayed keyed with SECRET_KEY). Every ``ADRENAL_*`` name in the README is read by
    the code from the environment (or is compose's own), and those three reach the settings with their defaults."""
    import re

    readme = (REPO / "README.md").read_text()
    code = "\n".join(p.read_text() for d in ("adrenal_site", "annotations", "inference", "scripts", "synthetic")
                     for p in (REPO / d).rglob("*.py"))
    compose = (REPO / "docker" / "compose.yml").read_text()
    not_env = {"ADRENAL_CSP"}  # a settings dict, named as such ("ADRENAL_CSP in the settings")
    unread = [n for n in sorted(set(re.findall(r"\bADRENAL_[A-Z0-9_]*[A-Z0-9]\b", readme)) - not_env)
              if not re.search(rf"""(environ\.get|env_bool|env_number)\(\s*f?["']{n}["']""", code) and f"${{{n}" not in compose
              and not (n.startswith("ADRENAL_DEMO_") and n.endswith("_PASSWORD") and "ADRENAL_DEMO_{" in code)]
    assert not unread, f"named in the README but read from no environment variable: {unread}"

    code = ("import json, django; django.setup(); from django.conf import settings as s; "
            "from annotations.services.boxes import max_side_mm; from annotations.services.importer import pseudonym_key; "
            "print(json.dumps([s.ADRENAL_AUTO_REBUILD_IMAGES, max_side_mm(), pseudonym_key('X')]))")
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("ADRENAL_AUTO_", "ADRENAL_MAX_", "ADRENAL_PSEUDONYM")) and k != "SECRET_KEY"}
    base.update(ADRENAL_DATA_DIR=str(tmp_path), ADRENAL_LOCAL_SECRET="1", DJANGO_SETTINGS_MODULE="adrenal_site.settings")

    def read(**env):
        out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env={**base, **env}, capture_output=True,
                             text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    rebuild, side, key = read()
    assert (rebuild, side) == (True, 200.0)
    assert read(SECRET_KEY="k" * 40)[2] == read(SECRET_KEY="k" * 40, ADRENAL_PSEUDONYM_KEY="")[2]  # default: SECRET_KEY
    set_ = read(ADRENAL_AUTO_REBUILD_IMAGES="0", ADRENAL_MAX_BOX_SIDE_MM="150", ADRENAL_PSEUDONYM_KEY="p" * 40)
    assert set_[:2] == [False, 150.0]
    assert set_[2] == read(ADRENAL_PSEUDONYM_KEY="p" * 40, SECRET_KEY="other" * 10)[2] != key  # the key, not SECRET_KEY
