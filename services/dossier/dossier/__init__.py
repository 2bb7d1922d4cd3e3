"""Coordo dossier service."""
