from django.conf import settings
from django.urls import include, path
from django.views.decorators.csrf import csrf_exempt
from django.views.i18n import set_language

import kami.backoffice.admin  # noqa: E402,F401  (registers the back office's pages)
from kami.backoffice.site import site as backoffice  # noqa: E402
from kami.ops.metrics_view import metrics  # noqa: E402

urlpatterns = [
    path(f"{settings.KAMI_ADMIN_PATH}/", backoffice.urls),
    path("", include("kami.api.urls")),
    path("", include("kami.storefront.urls")),
    # The Telegram bot's webhook (docs/telegram.md): refuses requests without its secret-token header.
    path("", include("kami.telegram.urls")),
    # The optional self-hosted captcha (KAMI_CAPTCHA=1): its pictures, drawn by this server.
    path("captcha/", include("captcha.urls")),
    # The language switcher. CSRF-exempt on purpose: pages that show keys send no referrer, so a
    # browser posts their forms with `Origin: null`, which the CSRF check refuses; switching a
    # visitor's language is no harm worth that. `next` is still checked to stay on this site.
    path("i18n/setlang/", csrf_exempt(set_language), name="set_language"),
    # Prometheus (docs/operations.md, "Metrics"): 404 unless KAMI_METRICS_TOKEN or KAMI_METRICS_LOOPBACK is set.
    path("metrics", metrics, name="metrics"),
]
