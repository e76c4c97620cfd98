"""Uploaded key imports, run in the background: the job, then the restock backfill.

Stock runs the import (kami.stock.jobs) and knows nothing of orders; fulfilling the product's
awaiting-stock orders once keys arrived is fulfilment's part (DESIGN.md §3). The worker calls
`import_jobs_run_due` in a thread of its own, so a long import never holds up an email.
"""
from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable

from kami.fulfilment.backfill import stock_added
from kami.stock.jobs import import_job_claim_due, import_job_run

log = logging.getLogger("kami.fulfilment.imports")


def import_jobs_run_due(*, limit: int = 1, owner: str | None = None, stop: Callable[[], bool] | None = None) -> int:
    """Run up to `limit` due import jobs (queued, or abandoned by a dead worker) one after the
    other; return how many were run. Jobs are leased with SKIP LOCKED: several workers never
    run the same job. `stop` is asked between chunks (a stopped job goes back to the queue)."""
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
    ran = 0
    while ran < limit and not (stop is not None and stop()):
        job = import_job_claim_due(owner=owner)
        if job is None:
            break
        job = import_job_run(job_id=job.pk, owner=owner, stop=stop)
        ran += 1
        log.info("import job #%s %s: imported %s, duplicates %s, invalid %s", job.pk, job.status, job.imported,
                 job.duplicates, job.invalid)
        if job.imported:
            fulfilled = stock_added(product_id=job.product_id)
            if fulfilled:
                log.info("import job #%s: %s awaiting-stock order(s) fulfilled", job.pk, fulfilled)
    return ran
