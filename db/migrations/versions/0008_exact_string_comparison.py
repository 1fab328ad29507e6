"""Compare ids, namespaces, keys and usages byte for byte on MariaDB and MySQL.

A database created with the server's default collation
(``utf8mb4_general_ci``) made ``TENANT-ABC``, ``tenant-abc`` and
``tenant-abc `` one project in every SQL filter and unique index. Every
VARCHAR column of every table is converted to ``utf8mb4_nopad_bin``
(MySQL 8: ``utf8mb4_0900_bin``): byte for byte, and NO PAD, so a
trailing space counts too (``utf8mb4_bin`` is PAD SPACE and ignores it). Each table's default
collation becomes the same, so a column added later by ``ALTER TABLE``
gets it as well. Rows that were distinct stay distinct under a stricter
comparison, so the conversion cannot fail on a unique index. Nothing
changes on SQLite and PostgreSQL, which already compare this way.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-05
"""

from alembic import op
import sqlalchemy as sa

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

EXACT_COLLATION = "utf8mb4_nopad_bin"
# MySQL 8 has no utf8mb4_nopad_bin; its binary NO PAD collation is this.
MYSQL_EXACT_COLLATION = "utf8mb4_0900_bin"


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name not in ("mysql", "mariadb"):
        return
    exact = (EXACT_COLLATION if getattr(bind.dialect, "is_mariadb", True)
             else MYSQL_EXACT_COLLATION)
    inspector = sa.inspect(bind)
    for table in inspector.get_table_names():
        if table == "alembic_version":
            continue
        changes = [f"DEFAULT CHARACTER SET utf8mb4 COLLATE {exact}"]
        for column in inspector.get_columns(table):
            kind = column["type"]
            if not isinstance(kind, sa.VARCHAR) or getattr(kind, "collation", None) == exact:
                continue
            null = "NULL" if column["nullable"] else "NOT NULL"
            changes.append(f"MODIFY `{column['name']}` VARCHAR({kind.length}) "
                           f"CHARACTER SET utf8mb4 COLLATE {exact} {null}")
        op.execute(f"ALTER TABLE `{table}` " + ", ".join(changes))
