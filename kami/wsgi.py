import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kami.settings")
application = get_wsgi_application()

from kami.api.lean import lean_dispatch  # noqa: E402  (after Django is set up)

application = lean_dispatch(application)  # notifications and sessionless buyer pages skip middleware they do not need

from kami.core.logcontext import request_ids  # noqa: E402

application = request_ids(application)  # outermost: every request's log lines carry its id (X-Request-ID)
