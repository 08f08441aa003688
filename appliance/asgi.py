import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
os.environ.setdefault("APPLIANCE_PROCESS", "web")  # database connections from a pool
application = get_asgi_application()
# What start-up leaves behind lives as long as the process: later collections skip it.
gc.collect()
gc.freeze()
