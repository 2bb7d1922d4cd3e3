"""Coordo taches service."""
