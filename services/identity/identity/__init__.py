"""Coordo identity service: accounts, structures, professions, directory and the OIDC provider."""
