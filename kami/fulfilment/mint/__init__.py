"""Keys minted on demand (issue 14): a `dynamic` product's keys come from the merchant's own
system, one call per paid order, signed like the webhooks (docs/api.md "Keys minted on demand").

    confirm (its transaction)   order → awaiting_stock, outbox row `mint_keys` (service.mint_queue)
    worker (no transaction)     POST the mint URL, signed, with an idempotency key per item;
                                check the answer (answer.py) and seal the keys (channel.py)
    store (one transaction)     lock the order; still waiting → keys stored sold and linked, the
                                order fulfilled, its deliveries queued; else nothing (service.py)
    out of attempts             the order keeps waiting, the merchant is alerted (service.py)

config.py sets a product's mint URL and signing secret (shown once, sealed with the data key).
"""
