"""Coordo cercle service."""
