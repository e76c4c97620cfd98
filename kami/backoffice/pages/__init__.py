"""Back-office pages that are not a model's: thin views registered by kami/backoffice/admin/ modules."""
