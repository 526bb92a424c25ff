package storetest

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	_ "github.com/jackc/pgx/v5/stdlib" // the "pgx" database/sql driver, for RowCounts
	_ "modernc.org/sqlite"             // the "sqlite" database/sql driver, for RowCounts

	"github.com/otpd/otpd/internal/store"
)

// Dump returns everything the database at dsn holds, for "no secret at rest" tests. SQLite: the raw
// bytes of the database file and its WAL (so free pages and not yet checkpointed writes count too).
// PostgreSQL: every row of every table in the public schema in the server's text form, where bytea
// is hex ("\x…"). s is the store on dsn; it is only asked for its dialect.
func Dump(t testing.TB, s store.Store, dsn string) []byte {
	t.Helper()
	var out bytes.Buffer
	if s.Dialect() != "postgres" {
		path := dsn
		for _, prefix := range []string{"sqlite://", "sqlite:", "file:"} {
			path = strings.TrimPrefix(path, prefix)
		}
		for _, f := range []string{path, path + "-wal"} {
			b, err := os.ReadFile(f)
			if err != nil && !os.IsNotExist(err) {
				t.Fatalf("dump: %v", err)
			}
			out.Write(b)
		}
		return out.Bytes()
	}
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`)
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("dump: %v", err)
	}
	for _, table := range tables {
		rows, err := conn.Query(ctx, `SELECT r::text FROM `+pgx.Identifier{"public", table}.Sanitize()+` r`)
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("dump %s: %v", table, err)
		}
		out.WriteString(table + "\n")
		for _, l := range lines {
			out.WriteString(l + "\n")
		}
	}
	return out.Bytes()
}

// RowCounts returns how many rows each table of the database at dsn holds (goose's own version
// table left out), for "nothing was written" tests. s is the store on dsn; it is only asked for
// its dialect.
func RowCounts(t testing.TB, s store.Store, dsn string) map[string]int {
	t.Helper()
	driver, list := "sqlite", `SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' ORDER BY name`
	if s.Dialect() == "postgres" {
		driver, list = "pgx", `SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY tablename`
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		t.Fatalf("row counts: %v", err)
	}
	defer db.Close()
	rows, err := db.Query(list)
	if err != nil {
		t.Fatalf("row counts: %v", err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatalf("row counts: %v", err)
		}
		if name != "goose_db_version" {
			tables = append(tables, name)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("row counts: %v", err)
	}
	counts := map[string]int{}
	for _, table := range tables {
		var n int
		// The names come from the catalogue, not from input; quoted all the same.
		if err := db.QueryRow(`SELECT count(*) FROM "` + strings.ReplaceAll(table, `"`, `""`) + `"`).Scan(&n); err != nil {
			t.Fatalf("row counts %s: %v", table, err)
		}
		counts[table] = n
	}
	return counts
}
