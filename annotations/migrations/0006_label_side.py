from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotations", "0005_series_submitted_by"),
    ]

    operations = [
        migrations.AddField(
            model_name="label",
            name="side",
            field=models.CharField(blank=True, default="", max_length=4,
                                   help_text="Which adrenal is abnormal when known: 'R', 'L', 'RL' or 'none'; "
                                             "'' = not known"),
        ),
    ]
