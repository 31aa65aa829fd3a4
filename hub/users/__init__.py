"""People at the hub: accounts, roles, sign-in sessions and personal API tokens."""
