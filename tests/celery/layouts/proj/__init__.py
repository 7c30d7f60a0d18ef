"""Celery's Django layout: ``proj/celery.py`` holds the app, and this package does not
re-export it."""
