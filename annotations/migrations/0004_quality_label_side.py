from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ("annotations", "0003_box_history_and_side_findings"),
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
