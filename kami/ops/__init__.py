"""Running a shop: `kami doctor`'s checks and `kami backup` / `kami restore`.

Orchestration level (DESIGN.md §3, beside `fulfilment`): a check reads across domains (stock
keys, gateway settings, the delivery outbox) and a backup covers the whole database, so this
belongs to no single domain app. Only the CLI imports it; it imports nothing above itself. No
models: not an installed app."""
