"""The sample's own tests: ``python manage.py test demo`` (tests/ops runs them too).

Tasks run through django-ray's real worker loop and recording path, with Ray
replaced by an in-process call (``django_ray.testing.drain``).
"""

import json

from django.contrib.auth.models import User
from django.test import TestCase
from django.urls import reverse

from demo import tasks
from demo.catalog import CATALOG
from django_ray.models import TaskExecution
from django_ray.testing import drain


class ApiTests(TestCase):
    def enqueue(self, name, arguments=None):
        return self.client.post(
            reverse("demo:api_enqueue", args=[name]),
            data=json.dumps(arguments or {}),
            content_type="application/json",
        )

    def test_enqueue_run_and_read_the_result(self):
        response = self.enqueue("count_primes", {"limit": 100})
        self.assertEqual(response.status_code, 202)
        enqueued = response.json()
        self.assertEqual(enqueued["status"], "READY")
        self.assertEqual(enqueued["kwargs"], {"limit": 100})
        row = TaskExecution.objects.get(pk=enqueued["id"])
        self.assertEqual(row.options, {"num_cpus": 1, "memory": 256 * 1024 * 1024})
        self.assertEqual(row.queue_name, "cpu")

        drain()
        result = self.client.get(enqueued["url"]).json()

        self.assertEqual(result["status"], "SUCCESSFUL")
        self.assertEqual(result["return_value"], {"limit": 100, "primes": 25, "largest": 97})

    def test_a_failing_task_shows_its_error(self):
        response = self.enqueue("ratio", {"a": 1, "b": 0})

        drain()
        result = self.client.get(response.json()["url"]).json()

        self.assertEqual(result["status"], "FAILED")
        self.assertEqual(
            result["errors"],
            [
                {
                    "exception": "builtins.ZeroDivisionError",
                    "message": "ZeroDivisionError: float division by zero",
                }
            ],
        )

    def test_a_flaky_task_is_retried_until_it_succeeds(self):
        response = self.enqueue("flaky", {"failures": 2})

        drain()
        result = self.client.get(response.json()["url"]).json()

        self.assertEqual((result["status"], result["attempts"]), ("SUCCESSFUL", 3))
        self.assertEqual(result["return_value"], {"attempt": 3})
        self.assertEqual(len(result["errors"]), 2)

    def test_async_and_database_tasks_run(self):
        greeting = self.enqueue("slow_greeting", {"name": "Ada", "seconds": 0}).json()
        drain()
        counts = self.enqueue("task_counts").json()
        drain()

        self.assertEqual(self.client.get(greeting["url"]).json()["return_value"], "Hello, Ada!")
        # It counts itself, RUNNING while it runs.
        self.assertEqual(
            self.client.get(counts["url"]).json()["return_value"], {"SUCCESSFUL": 1, "RUNNING": 1}
        )

    def test_arguments_are_checked_against_the_catalog(self):
        response = self.enqueue("fibonacci", {"n": 10**9, "shell": "rm -rf /"})

        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            response.json()["problems"],
            {
                "shell": "is not a parameter of this task",
                "n": "must be at most 10000; got 1000000000",
            },
        )
        self.assertFalse(TaskExecution.objects.exists())

    def test_only_catalog_tasks_and_json_objects_are_accepted(self):
        self.assertEqual(self.enqueue("os.system").status_code, 404)
        response = self.client.post(
            reverse("demo:api_enqueue", args=["fibonacci"]),
            data="[1]",
            content_type="application/json",
        )
        self.assertEqual(response.status_code, 400)
        self.assertEqual(
            self.client.get(reverse("demo:api_result", args=["nope"])).status_code, 404
        )

    def test_catalog_and_results_list(self):
        self.enqueue("word_count", {"text": "a b a"})
        drain()

        catalog = self.client.get(reverse("demo:api_catalog")).json()
        results = self.client.get(reverse("demo:api_results")).json()["results"]

        self.assertEqual(set(catalog), set(CATALOG))
        self.assertEqual(
            catalog["slow_greeting"]["params"]["seconds"], {"type": "float", "default": 1.0}
        )
        self.assertEqual(
            [(r["task"], r["status"], r["return_value"]) for r in results],
            [("word_count", "SUCCESSFUL", {"a": 2, "b": 1})],
        )


class PageTests(TestCase):
    def test_the_page_enqueues_from_a_form_and_lists_outcomes(self):
        response = self.client.post(reverse("demo:enqueue", args=["fibonacci"]), {"n": "10"})
        self.assertRedirects(response, reverse("demo:index"), fetch_redirect_response=False)
        drain()

        page = self.client.get(reverse("demo:index"))

        self.assertContains(page, "Enqueued fibonacci as ")
        self.assertContains(page, '<td class="SUCCESSFUL">SUCCESSFUL</td>', html=True)
        self.assertContains(page, "&#x27;value&#x27;: 55")

    def test_the_page_shows_positional_and_keyword_arguments(self):
        tasks.ratio.enqueue(22, 7)
        tasks.word_count.enqueue(text="a b")

        page = self.client.get(reverse("demo:index"))

        self.assertContains(page, "<td><code>22, 7</code></td>", html=True)
        self.assertContains(page, '<td><code>text="a b"</code></td>', html=True)

    def test_a_bad_form_value_is_reported(self):
        response = self.client.post(
            reverse("demo:enqueue", args=["fibonacci"]), {"n": "ten"}, follow=True
        )

        self.assertContains(
            response, "fibonacci was not enqueued: n: must be a number; got &#x27;ten&#x27;"
        )
        self.assertFalse(TaskExecution.objects.exists())

    def test_admin_and_metrics_are_mounted(self):
        User.objects.create_superuser("admin", password="x")
        self.client.force_login(User.objects.get())
        TaskExecution.objects.create(task_path="demo.tasks.fibonacci", queue_name="cpu")

        admin_page = self.client.get(reverse("admin:django_ray_taskexecution_changelist"))
        metrics = self.client.get(reverse("metrics"))

        self.assertEqual(admin_page.status_code, 200)
        self.assertIn('django_ray_queue_depth{queue="cpu"} 1.0', metrics.content.decode())
