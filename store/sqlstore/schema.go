package sqlstore

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// SchemaVersion is the schema version this library writes and reads. New
// brings older schemas up to it and refuses newer ones (ErrSchemaTooNew).
const SchemaVersion = 2

// schemaSQL is schema.sql: the schema, as a psql script that the library
// also runs itself.
//
//go:embed schema.sql
var schemaSQL string

// SchemaSQL returns the schema script for table as the library runs it:
// schema.sql with psql's variables substituted and psql's backslash
// commands removed. It is idempotent and takes the schema advisory lock
// itself; run it in one transaction.
func SchemaSQL(table string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(schemaSQL, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), `\`) {
			continue
		}
		b.WriteString(line)
	}
	return strings.NewReplacer(
		`:"table"`, ident(table),
		`:"sequence"`, ident(table+"_version_seq"),
		`:"index"`, ident(table+"_expires_at_idx"),
		`:'table'`, literal(table),
	).Replace(b.String())
}

// schemaLock is the advisory lock key ("slschema") schema.sql takes.
const schemaLock = 8317149482636897633

// ensureSchema brings the database's schema for table to SchemaVersion in
// one transaction under the schema advisory lock, so that processes
// starting together neither race on CREATE nor see a half-made schema.
// When the schema is current it runs no DDL.
func ensureSchema(ctx context.Context, pool *pgxpool.Pool, table string) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(schemaLock)); err != nil {
		return err
	}
	var haveVersions, haveTable bool
	err = tx.QueryRow(ctx, `SELECT to_regclass('sessionlock_schema_version') IS NOT NULL, to_regclass($1) IS NOT NULL`,
		ident(table)).Scan(&haveVersions, &haveTable)
	if err != nil {
		return err
	}
	version := 0
	if haveVersions {
		err := tx.QueryRow(ctx, `SELECT version FROM sessionlock_schema_version WHERE table_name = $1`, table).Scan(&version)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: table %s is at version %d, this library knows %d", ErrSchemaTooNew, table, version, SchemaVersion)
	}
	if version == SchemaVersion && haveTable {
		return tx.Commit(ctx)
	}
	if _, err := tx.Exec(ctx, SchemaSQL(table)); err != nil {
		return err
	}
	return tx.Commit(ctx)
}
