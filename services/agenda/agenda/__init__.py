"""Coordo agenda service."""
