"""Operating django-ray: metrics, the sample project, Docker files and the docs."""
