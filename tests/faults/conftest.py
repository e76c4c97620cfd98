"""Fault tests: real processes (`kami worker`, `kami serve`), real database servers, a real SMTP
server, and the fault done for real (SIGKILL, a database restart, SMTP stopped). The fixtures
of tests/delivery (SMTP on loopback, orders fulfilled through the API) are used as they are."""
from tests.delivery.conftest import fulfilled_order, real_time, smtp  # noqa: F401 (fixtures)
