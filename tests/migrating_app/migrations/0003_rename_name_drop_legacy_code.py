from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("migrating_app", "0002_alter_price_type"),
    ]

    operations = [
        migrations.RenameField(model_name="item", old_name="name", new_name="title"),
        migrations.RemoveField(model_name="item", name="legacy_code"),
    ]
