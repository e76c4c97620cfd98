"""Moved to kami.staff.roles. Only `kami serve` still imports `owners_exist` from here, because
serve.py was being changed elsewhere when the roles moved; point it at kami.staff.roles and
delete this module (pyproject's import contracts name that one import)."""
from kami.staff.roles import owners_exist  # noqa: F401
