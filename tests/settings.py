"""Settings for the test suite: the real services, in places of their own.

The tests use their own PostgreSQL database (created by pytest-django as the owner role),
Redis database 15 (flushed at the start), the small real models and a scratch data folder,
so a running demo appliance on the same host is left alone.
"""

import os
from pathlib import Path

from appliance.env import load_env_file

_ROOT = Path(__file__).resolve().parent.parent
load_env_file(Path(os.environ.get("APPLIANCE_ENV_FILE", _ROOT / "var" / "appliance.env")))
os.environ["APPLIANCE_REDIS_URL"] = os.environ.get(
    "APPLIANCE_TEST_REDIS_URL", "redis://127.0.0.1:6379/15"
)
os.environ.setdefault("APPLIANCE_DB_USER", "appliance_owner")
if os.environ["APPLIANCE_DB_USER"] == "appliance_owner":
    os.environ.setdefault(
        "APPLIANCE_DB_PASSWORD", os.environ.get("APPLIANCE_DB_OWNER_PASSWORD", "")
    )
os.environ["APPLIANCE_LLM_MODEL"] = "smollm2-135m"
os.environ.pop("APPLIANCE_LLM_MODEL_PATH", None)
os.environ.setdefault("APPLIANCE_MODELS_DIR", str(_ROOT / "var" / "models"))
os.environ["APPLIANCE_DATA_DIR"] = os.environ.get(
    "APPLIANCE_TEST_DATA_DIR", str(_ROOT / "var" / "test")
)
os.environ.setdefault("APPLIANCE_LLM_SEED", "7")
os.environ.setdefault("APPLIANCE_LLM_MAX_ANSWER_TOKENS", "96")

from appliance.settings import *  # noqa: E402,F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast logins in tests
