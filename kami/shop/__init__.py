"""The merchant's shop settings (name, logo, notice, footer): read on every page, written by
staff. A domain module: the ShopSettings row itself stays in kami.core.models (no model moves)."""
