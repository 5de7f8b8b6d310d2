"""Box versions record how they were made (edit, confirm, undo, redo, restore) and which state they hold, so
undo and redo walk the whole history; per-side findings (gland seen / not visualised / absent, lesion marker,
comment) with their versions. Versions saved before this migration are read as a linear history of edits."""

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def linear_history(apps, schema_editor):
    """Each earlier version is an edit made from the version before it."""
    CropBoxVersion = apps.get_model("annotations", "CropBoxVersion")
    CropBoxVersion.objects.update(state=models.F("version"))
    CropBoxVersion.objects.filter(version__gt=1).update(parent_state=models.F("version") - 1)


class Migration(migrations.Migration):

    dependencies = [
        ('annotations', '0002_studies_plural'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='cropboxversion',
            name='action',
            field=models.CharField(choices=[('edit', 'Edit'), ('confirm', 'Confirm'), ('undo', 'Undo'), ('redo', 'Redo'), ('restore', 'Restore')], default='edit', max_length=16),
        ),
        migrations.AddField(
            model_name='cropboxversion',
            name='parent_state',
            field=models.PositiveIntegerField(blank=True, help_text='for edits: the state the edit was made from', null=True),
        ),
        migrations.AddField(
            model_name='cropboxversion',
            name='restored_from',
            field=models.PositiveIntegerField(blank=True, help_text='for undo, redo and restore: the version copied', null=True),
        ),
        migrations.AddField(
            model_name='cropboxversion',
            name='state',
            field=models.PositiveIntegerField(blank=True, help_text='the edit version whose box this version holds (itself for edits)', null=True),
        ),
        migrations.RunPython(linear_history, migrations.RunPython.noop),
        migrations.CreateModel(
            name='SideFinding',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('side', models.CharField(choices=[('R', 'patient right'), ('L', 'patient left')], max_length=1)),
                ('gland', models.CharField(choices=[('seen', 'gland seen'), ('not_visualised', 'gland not visualised'), ('absent', 'gland absent (e.g. after adrenalectomy)')], default='seen', max_length=16)),
                ('lesion_centre_lps', models.JSONField(blank=True, help_text='[x, y, z] mm, LPS', null=True)),
                ('lesion_diameter_mm', models.FloatField(blank=True, null=True)),
                ('comment', models.TextField(blank=True)),
                ('version', models.PositiveIntegerField(default=1)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('series', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='findings', to='annotations.series')),
                ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['series', 'side'],
            },
        ),
        migrations.CreateModel(
            name='SideFindingVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('version', models.PositiveIntegerField()),
                ('gland', models.CharField(choices=[('seen', 'gland seen'), ('not_visualised', 'gland not visualised'), ('absent', 'gland absent (e.g. after adrenalectomy)')], max_length=16)),
                ('lesion_centre_lps', models.JSONField(blank=True, null=True)),
                ('lesion_diameter_mm', models.FloatField(blank=True, null=True)),
                ('comment', models.TextField(blank=True)),
                ('restored_from', models.PositiveIntegerField(blank=True, help_text='the version this one restores', null=True)),
                ('updated_at', models.DateTimeField(default=django.utils.timezone.now)),
                ('finding', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='versions', to='annotations.sidefinding')),
                ('updated_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'ordering': ['finding', '-version'],
            },
        ),
        migrations.AddConstraint(
            model_name='sidefinding',
            constraint=models.UniqueConstraint(fields=('series', 'side'), name='uniq_finding_side'),
        ),
        migrations.AddConstraint(
            model_name='sidefindingversion',
            constraint=models.UniqueConstraint(fields=('finding', 'version'), name='uniq_finding_version'),
        ),
    ]
