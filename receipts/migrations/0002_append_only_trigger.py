"""PostgreSQL: receipts are append-only. A row trigger refuses UPDATE and DELETE, whoever asks
(the ORM, raw SQL, a console). TRUNCATE is not a row operation and stays a DBA's tool (the test
runner empties tables with it). SQLite relies on the code having no such path."""

from django.db import migrations

FORWARD = """
CREATE OR REPLACE FUNCTION receipts_refuse_change() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'receipts are append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER receipts_append_only
    BEFORE UPDATE OR DELETE ON receipts_receipt
    FOR EACH ROW EXECUTE FUNCTION receipts_refuse_change();
"""

BACKWARD = """
DROP TRIGGER IF EXISTS receipts_append_only ON receipts_receipt;
DROP FUNCTION IF EXISTS receipts_refuse_change();
"""


def forward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(FORWARD, params=None)


def backward(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(BACKWARD, params=None)


class Migration(migrations.Migration):
    dependencies = [("receipts", "0001_initial")]

    operations = [migrations.RunPython(forward, backward)]
