"""Coordo microservice chassis: plumbing shared by every service, no domain rule."""
