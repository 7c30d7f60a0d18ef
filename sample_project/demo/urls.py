from django.urls import path

from demo import views

app_name = "demo"
urlpatterns = [
    path("", views.index, name="index"),
    path("enqueue/<str:name>/", views.enqueue_form, name="enqueue"),
    path("api/tasks/", views.api_catalog, name="api_catalog"),
    path("api/tasks/<str:name>/", views.api_enqueue, name="api_enqueue"),
    path("api/results/", views.api_results, name="api_results"),
    path("api/results/<str:result_id>/", views.api_result, name="api_result"),
]
