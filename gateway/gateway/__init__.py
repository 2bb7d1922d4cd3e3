"""Coordo gateway: OIDC token check, routing from the contracts, habilitation check, access audit."""
