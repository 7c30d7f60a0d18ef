"""The Ray side of django-ray. Nothing here touches the ORM or Ray at import time."""
