-- Schema of the sessionlock SQL store (package sqlstore), schema version 2.
--
-- sqlstore.New applies this file itself on every database it is given, in
-- one transaction, when the recorded schema version is older than the
-- library's (or absent). When the version is current it runs no DDL at all,
-- so an application role without DDL rights works against a database an
-- administrator prepared by hand with psql, in one transaction:
--
--     psql -1 -v table=sessionlock_records -f schema.sql "$DSN"
--
-- The table variable is optional (default sessionlock_records) and must be
-- the same as sqlstore.Config.Table. Every statement is idempotent, so the
-- file can be run again safely. Lines starting with a backslash are psql
-- commands that the library skips; it substitutes :"table", :"sequence",
-- :"index" and :'table' exactly as psql would.
--
-- Rules the store's statements follow (see doc.go):
--   * a row is live while expires_at > now(), the database server's clock;
--     every read and write ignores expired rows, and the sweep deletes them;
--   * version is the compare-and-swap token; every write takes a fresh value
--     from the sequence, so a token is never reused in a database, even for
--     a key deleted and added again;
--   * claimed_version is the token of the row version that the row's last
--     claim replaced (Store.Claim: package tiered's revival adopting a
--     durable copy), overwritten_version the token of the version its last
--     other write replaced, both 0 when there was none since the row was
--     created; created_version is the token the row was created with (0:
--     created before schema version 2). Together they tell a writer whether
--     its write was adopted (Store.ClaimOf).
--
-- Version 2 adds the three columns to a version 1 table:
-- ADD COLUMN with a constant default changes only the catalog (no table
-- rewrite), holding the table's lock for a moment.

\if :{?table}
\else
\set table sessionlock_records
\endif
\set sequence :table '_version_seq'
\set index :table '_expires_at_idx'

-- One advisory lock ("slschema") serialises the schema work of every
-- process that starts at the same time; it is released at commit.
SELECT pg_advisory_xact_lock(8317149482636897633);

-- ALTER TABLE below waits for the table's lock while the table is in use,
-- and every statement of the application queues behind that wait: give up
-- after 5 s (run the script again later) rather than stall the sessions.
SET LOCAL lock_timeout = '5s';

-- One row per records table: the schema version it was last brought to.
CREATE TABLE IF NOT EXISTS sessionlock_schema_version (
    table_name text PRIMARY KEY,
    version    integer NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

-- Source of CAS tokens (the version column).
CREATE SEQUENCE IF NOT EXISTS :"sequence" AS bigint;

-- One row per key: the value, its CAS token and its expiry.
CREATE TABLE IF NOT EXISTS :"table" (
    key        text PRIMARY KEY,
    value      bytea NOT NULL,
    version    bigint NOT NULL,
    expires_at timestamptz NOT NULL,
    claimed_version     bigint NOT NULL DEFAULT 0,
    overwritten_version bigint NOT NULL DEFAULT 0,
    created_version     bigint NOT NULL DEFAULT 0
);

-- Version 2: on a table that version 1 created.
ALTER TABLE :"table"
    ADD COLUMN IF NOT EXISTS claimed_version     bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS overwritten_version bigint NOT NULL DEFAULT 0,
    ADD COLUMN IF NOT EXISTS created_version     bigint NOT NULL DEFAULT 0;

-- Lets the sweep find expired rows without a full scan.
CREATE INDEX IF NOT EXISTS :"index" ON :"table" (expires_at);

INSERT INTO sessionlock_schema_version AS v (table_name, version)
VALUES (:'table', 2)
ON CONFLICT (table_name) DO UPDATE
    SET version = EXCLUDED.version, updated_at = now()
    WHERE v.version < EXCLUDED.version;
