package sqlstore

import (
	"fmt"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/sessionlock/sessionlock/record"
)

// queries are the store's statements for one table. Every statement reads
// the clock as now(), the database server's transaction time, never the
// application server's: a row is live while expires_at > now().
type queries struct {
	get, add, cas, touch, del, ttl, sweep string
	getTouch                              string
	getTTL, putRecord, recordSeq          string
	claim, claimOf                        string
}

func buildQueries(table string) queries {
	r := strings.NewReplacer(
		"{t}", ident(table),
		// The Seq of a record in row r, and whether r holds a record: see
		// records.go.
		"{seq}", seqOf("r.value"),
		"{newseq}", seqOf("EXCLUDED.value"),
		"{isrecord}", fmt.Sprintf(`(length(r.value) >= %d AND substring(r.value FROM 1 FOR %d) = '\x%x'::bytea
			AND get_byte(r.value, %d) BETWEEN %d AND %d)`,
			record.MinLen, len(record.Magic), record.Magic, len(record.Magic), record.MinVersion, record.Version),
		"{next}", "nextval("+literal(ident(table+"_version_seq"))+")",
	)
	q := func(s string) string { return strings.Join(strings.Fields(r.Replace(s)), " ") }
	// expiry is the expiry of a row written now with a TTL of parameter
	// $n microseconds.
	expiry := func(s, n string) string {
		return strings.ReplaceAll(s, "{expiry}", "now() + "+n+"::float8 * interval '1 microsecond'")
	}
	return queries{
		get: q(`SELECT value, version FROM {t} WHERE key = $1 AND expires_at > now()`),

		// Insert if absent; a conflicting row is replaced only if it has
		// expired (the WHERE of DO UPDATE is checked on the locked, latest
		// row). No row returned = a live row exists. A row inserted or
		// replaced is created anew: created_version is its token, and
		// nothing is claimed on it yet (see Store.ClaimOf).
		add: q(expiry(`WITH n AS (SELECT {next} AS v)
			INSERT INTO {t} AS r (key, value, version, expires_at, created_version, claimed_version, overwritten_version)
			SELECT $1::text, $2::bytea, n.v, {expiry}, n.v, 0, 0 FROM n
			ON CONFLICT (key) DO UPDATE
				SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at,
					created_version = EXCLUDED.version, claimed_version = 0, overwritten_version = 0
				WHERE r.expires_at <= now()
			RETURNING version`, "$3")),

		// Records the version it replaces as overwritten, or, for Claim,
		// as claimed (see Store.ClaimOf).
		cas:   q(expiry(strings.ReplaceAll(casSQL, "{replaced}", "overwritten_version"), "$4")),
		claim: q(expiry(strings.ReplaceAll(casSQL, "{replaced}", "claimed_version"), "$4")),

		// Every row, expired or not: an expired row still tells what was
		// claimed on it.
		claimOf: q(`SELECT version, claimed_version, overwritten_version, created_version FROM {t} WHERE key = $1`),

		touch: q(expiry(`UPDATE {t} SET expires_at = {expiry} WHERE key = $1 AND expires_at > now()`, "$2")),

		// Touch and read in one statement: the row returned is the row
		// touched, so no commit can land between the read and the touch.
		getTouch: q(expiry(`UPDATE {t} SET expires_at = {expiry} WHERE key = $1 AND expires_at > now()
			RETURNING value, version`, "$2")),

		getTTL: q(`SELECT value, version,
				((extract(epoch FROM expires_at) - extract(epoch FROM now())) * 1000000)::bigint
			FROM {t} WHERE key = $1 AND expires_at > now()`),

		// Upsert ordered by the records' Seq ({seq}): an existing row is
		// replaced only if expired, not a record, or holding a lower Seq.
		// The WHERE of DO UPDATE is checked on the locked, latest row. A
		// row inserted or replaced because it expired is created anew, as
		// by add; a live row records the version it overwrote.
		putRecord: q(expiry(`WITH n AS (SELECT {next} AS v), put AS (
				INSERT INTO {t} AS r (key, value, version, expires_at, created_version, claimed_version, overwritten_version)
				SELECT $1::text, $2::bytea, n.v, {expiry}, n.v, 0, 0 FROM n
				ON CONFLICT (key) DO UPDATE
					SET value = EXCLUDED.value, version = EXCLUDED.version, expires_at = EXCLUDED.expires_at,
						created_version = CASE WHEN r.expires_at <= now() THEN EXCLUDED.version ELSE r.created_version END,
						claimed_version = CASE WHEN r.expires_at <= now() THEN 0 ELSE r.claimed_version END,
						overwritten_version = CASE WHEN r.expires_at <= now() THEN 0 ELSE r.version END
					WHERE r.expires_at <= now()
						OR NOT ({isrecord})
						OR {seq} < {newseq}
				RETURNING version
			)
			SELECT (SELECT version FROM put),
				(SELECT {seq} FROM {t} r WHERE key = $1 AND expires_at > now() AND {isrecord})`, "$3")),

		recordSeq: q(`SELECT CASE WHEN {isrecord} THEN {seq} END FROM {t} r WHERE key = $1 AND expires_at > now()`),

		// Deletes an expired row too; its liveness picks the answer.
		del: q(`DELETE FROM {t} WHERE key = $1 RETURNING expires_at > now()`),

		ttl: q(`SELECT ((extract(epoch FROM expires_at) - extract(epoch FROM now())) * 1000000)::bigint
			FROM {t} WHERE key = $1 AND expires_at > now()`),

		// At most $1 expired rows, oldest first; rows another transaction
		// holds (a concurrent Add reviving the key, another sweeper) are
		// skipped, and a locked row is re-checked for expiry.
		sweep: q(`DELETE FROM {t} WHERE key IN (
				SELECT key FROM {t} WHERE expires_at <= now()
				ORDER BY expires_at LIMIT $1
				FOR UPDATE SKIP LOCKED
			) AND expires_at <= now()`),
	}
}

// casSQL is CompareAndSwap's statement; {replaced} is the column that
// records the version it replaces (overwritten_version, or claimed_version
// for Claim). The
// update and the read that explains its failure share one snapshot:
// updated NULL and current NULL = no live row (not found); updated NULL and
// current set = another token (conflict). An update that waited for a
// concurrent writer re-checks the version on the row that writer left, so it
// never overwrites it.
const casSQL = `WITH current AS (
		SELECT version FROM {t} WHERE key = $1 AND expires_at > now()
	), updated AS (
		UPDATE {t} SET value = $2, version = {next}, expires_at = {expiry}, {replaced} = $3
		WHERE key = $1 AND version = $3 AND expires_at > now()
		RETURNING version
	)
	SELECT (SELECT version FROM updated), (SELECT version FROM current)`

// seqOf is the SQL expression for the Seq bytes of the record in column
// col: big-endian, so comparing the bytes compares the numbers
// (record.SeqOffset; SQL's substring counts from 1).
func seqOf(col string) string {
	return fmt.Sprintf("substring(%s FROM %d FOR %d)", col, record.SeqOffset+1, record.SeqLen)
}

// ident quotes an SQL identifier.
func ident(name string) string { return pgx.Identifier{name}.Sanitize() }

// literal quotes an SQL string literal.
func literal(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
