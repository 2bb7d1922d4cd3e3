"""Coordo documents service."""
