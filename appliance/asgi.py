import gc
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "appliance.settings")
os.environ.setdefault("APPLIANCE_PROCESS", "web")  # database connections from a pool
django_application = get_asgi_application()

# The MCP server is an ASGI app of the MCP SDK beside Django (it imports models, so after
# Django is set up). It takes its path and the lifespan events (its session manager's task
# group), Django everything else (Django does not speak lifespan).
from appliance.api import mcp_server  # noqa: E402

mcp_application = mcp_server.app()


async def application(scope, receive, send):  # type: ignore[no-untyped-def]
    path = scope.get("path", "")
    if (
        scope["type"] == "lifespan"
        or path == mcp_server.PATH
        or path.startswith(mcp_server.PATH + "/")
    ):
        await mcp_application(scope, receive, send)
        return
    await django_application(scope, receive, send)


# What start-up leaves behind lives as long as the process: later collections skip it.
gc.collect()
gc.freeze()
