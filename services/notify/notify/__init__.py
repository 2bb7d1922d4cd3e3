"""Coordo notify service."""
