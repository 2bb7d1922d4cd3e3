"""Coordo web front end (backend-for-frontend)."""
