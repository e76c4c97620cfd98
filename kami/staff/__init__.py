"""Staff: roles and the first owner's setup link. Domain services used by the back office and
the CLI alike (an edge never imports another edge); staff are Django users, roles are groups."""
