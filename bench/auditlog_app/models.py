"""The model whose save() is timed with and without django-auditlog registered."""

from django.db import models


class Account(models.Model):
    name = models.CharField(max_length=100)
    role = models.CharField(max_length=20)
    note = models.TextField(default="")

    class Meta:
        app_label = "auditlog_app"
